using System.Text.Json.Nodes;
using MoECompress.Compression.Training;
using MoECompress.Formats.Safetensors;

namespace MoECompress.Tests.Training;

/// <summary>
/// A tiny end-to-end reference training (real tokenizer, two small text files, one layer, 1 thread) for the resume
/// tests, and the comparison of two exported checkpoints: every file byte for byte, except the wall-clock columns of
/// training-loss.csv and, in the manifest, the creation time and the size/hash of that log.
/// </summary>
internal sealed class ResumableTrainingFixture : IDisposable
{
    private readonly string root = Path.Combine(Path.GetTempPath(), "moe-train-resume-" + Guid.NewGuid().ToString("N")[..8]);

    public ResumableTrainingFixture()
    {
        Directory.CreateDirectory(Data);
        File.WriteAllText(Path.Combine(Data, "prose.txt"), string.Concat(Enumerable.Range(0, 30).Select(i =>
            $"Expert {i % 7} of the mixture takes the tokens that the router sends to it, {i} times.\n")));
        File.WriteAllText(Path.Combine(Data, "code.txt"), string.Concat(Enumerable.Range(0, 30).Select(i =>
            $"for (int i = {i}; i < n; i++) {{ sum += values[i] * {i % 5}; }}\n")));
    }

    public string Data => Path.Combine(root, "train");

    public string Output(string name) => Path.Combine(root, name);

    public static string Tokenizer => TrainingRepository.MistralTokenizerModel;

    public ReferenceModelOptions Options(string output, int steps = 6) => new()
    {
        TrainDataDirectory = Data,
        TokenizerModelPath = Tokenizer,
        OutputDirectory = output,
        Layers = 1, HiddenSize = 32, IntermediateSize = 32, Experts = 4, TopK = 2, AttentionHeads = 2, KeyValueHeads = 1,
        SequenceLength = 16, BatchSize = 2, Steps = steps, WarmupSteps = 1, LogEvery = 1, Threads = 1, Seed = 5,
        CheckpointMinutes = 0,
    };

    /// <summary>The CLI arguments that build <see cref="Options"/> (with <paramref name="extra"/> appended).</summary>
    public string[] CliArguments(string output, int steps, params string[] extra) =>
    [
        "train-reference", "--train-data", Data, "--tokenizer", Tokenizer, "--output", output,
        "--layers", "1", "--hidden", "32", "--intermediate", "32", "--experts", "4", "--top-k", "2", "--heads", "2", "--kv-heads", "1",
        "--seq-len", "16", "--batch", "2", "--steps", steps.ToString(), "--warmup", "1", "--log-every", "1", "--threads", "1",
        "--seed", "5", "--checkpoint-minutes", "0", .. extra,
    ];

    /// <summary>
    /// Trains without interruption into <see cref="ReferenceModelOptions.OutputDirectory"/> and moves the result aside
    /// (the manifest records the output path, so the run to compare with must write to the same one); returns where.
    /// </summary>
    public static string TrainStraightAndMoveAside(ReferenceModelOptions options)
    {
        ReferenceModelTrainer.Train(options);
        Assert.False(Directory.Exists(options.CheckpointFolder()), "the checkpoint folder is deleted once the output is written");
        var aside = options.OutputDirectory + ".uninterrupted";
        Directory.Move(options.OutputDirectory, aside);
        return aside;
    }

    /// <summary>Trains with <paramref name="options"/> and stops it (Ctrl+C) once step <paramref name="stopAfter"/> is done.</summary>
    public static void TrainAndStop(ReferenceModelOptions options, int stopAfter)
    {
        using var cts = new CancellationTokenSource();
        var progress = new Hook(p => { if (p.Row?.Step == stopAfter) cts.Cancel(); });
        Assert.ThrowsAny<OperationCanceledException>(() => ReferenceModelTrainer.Train(options, progress, cts.Token));
        Assert.False(Directory.Exists(options.OutputDirectory), "a stopped run must not leave output");
    }

    /// <summary>Asserts that two exported checkpoints are the same (see the class summary for what is left out).</summary>
    public static void AssertSameCheckpoint(string expected, string actual)
    {
        var names = Files(expected);
        Assert.Equal(names, Files(actual));
        Assert.Contains("model.safetensors", names);
        foreach (var name in names)
        {
            var a = Path.Combine(expected, name);
            var b = Path.Combine(actual, name);
            if (name == "training-loss.csv")
                Assert.Equal(WithoutWallClock(a), WithoutWallClock(b));
            else if (name == CheckpointManifest.FileName)
                Assert.Equal(ManifestWithoutRunTimes(a), ManifestWithoutRunTimes(b));
            else
                Assert.True(File.ReadAllBytes(a).AsSpan().SequenceEqual(File.ReadAllBytes(b)), $"{name} differs");
        }
    }

    private static List<string> Files(string dir) =>
        Directory.GetFiles(dir).Select(Path.GetFileName).OfType<string>().Order(StringComparer.Ordinal).ToList();

    // elapsed_s and tokens_per_s (the last two columns) are wall-clock measurements.
    private static List<string> WithoutWallClock(string csv) =>
        File.ReadAllLines(csv).Select(line => string.Join(",", line.Split(',')[..^2])).ToList();

    private static string ManifestWithoutRunTimes(string path)
    {
        var json = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        json.Remove("created_utc");
        var files = json["files"]!.AsArray();
        foreach (var entry in files.Where(f => f!["file"]!.GetValue<string>() == "training-loss.csv").ToList())
            files.Remove(entry);
        return json.ToJsonString();
    }

    public void Dispose()
    {
        if (Directory.Exists(root)) Directory.Delete(root, recursive: true);
    }

    /// <summary>A synchronous progress sink (System.Progress would post to the thread pool).</summary>
    public sealed class Hook(Action<ReferenceTrainingProgress> report) : IProgress<ReferenceTrainingProgress>
    {
        public void Report(ReferenceTrainingProgress value) => report(value);
    }
}
