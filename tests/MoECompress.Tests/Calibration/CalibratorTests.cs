using System.Text.Json;
using System.Text.Json.Nodes;
using MoECompress.Compression.Calibration;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Synthetic;

namespace MoECompress.Tests.Calibration;

/// <summary>The calibrate command's library call end to end on a tiny model.</summary>
public sealed class CalibratorTests
{
    /// <summary>A .jsonl of pre-tokenized documents with ids inside the tiny models' 256-token vocabulary.</summary>
    private static string WriteTokenData(int documents = 6, int length = 40, int maxId = 256)
    {
        var path = TinyCalibrationModel.NewPath("data") + ".jsonl";
        var rng = new Random(17);
        File.WriteAllLines(path, Enumerable.Range(0, documents).Select(_ =>
            new JsonObject { ["input_ids"] = new JsonArray(Enumerable.Range(0, length).Select(_ => (JsonNode?)rng.Next(3, maxId)).ToArray()) }
                .ToJsonString()));
        return path;
    }

    [Fact]
    public async Task RunWritesAProfileThatLoadsBack()
    {
        var data = WriteTokenData();
        var output = TinyCalibrationModel.NewPath("calibrated");
        var lines = new List<string>();
        var result = await Calibrator.RunAsync(new CalibrateOptions
        {
            Model = TinyCalibrationModel.Mixtral, Data = data, Samples = 5, SeqLen = 16, Seed = 4, Out = output,
            DumpRouterLogits = true, MicroBatch = 32,
        }, new InlineProgress(lines.Add));

        Assert.Equal(Path.GetFullPath(output), result.Directory);
        Assert.Contains(lines, l => l.Contains("layer 4/4"));
        var profile = result.Profile;
        Assert.Equal(80, profile.Tokens);
        Assert.Equal(4, profile.Layers.Count);
        Assert.All(profile.Layers, l => Assert.Equal(80 * 2, l.SelectionCount.Sum()));
        Assert.Equal(5, profile.Data!.Sequences);
        Assert.Equal(16, profile.Data.SeqLen);
        Assert.Equal(4, profile.Data.Seed);
        Assert.Equal(Path.GetFullPath(data), Assert.Single(profile.Data.Files));
        Assert.Equal(64, profile.Model.ConfigSha256!.Length);
        Assert.NotNull(profile.Model.Tokenizer);

        var loaded = CalibrationProfile.Load(result.SummaryPath);
        Assert.Equal(profile.Layers.Select(l => l.Reap), loaded.Layers.Select(l => l.Reap));
        // Statistics only: the profile holds no H×H or I×I matrix, whatever the expert width.
        Assert.DoesNotContain(loaded.Layers, l => l.MeanOutputLoaded);
        using (var file = Formats.Safetensors.SafetensorsFile.Open(Path.Combine(result.Directory, CalibrationProfile.TensorFileName)))
            Assert.All(file.Names, n => Assert.DoesNotContain("hessian", n));
        var dump = CalibrationProfile.LoadRouterLogits(result.Directory);
        Assert.Equal(Enumerable.Repeat(16, 5), dump.SequenceLengths);
        Assert.Equal(new[] { 0, 1, 2, 3 }, dump.Layers.Keys.Order());
        Assert.All(dump.Layers.Values, v => Assert.Equal(80 * 8, v.Length));
        Assert.True(File.Exists(result.RouterLogitsPath));
        Assert.All(dump.TokenIds!, ids => Assert.Equal(1, ids[0])); // BOS of the Mixtral tokenizer starts every sequence
    }

    [Fact]
    public async Task AFamilyWithoutAForwardPassFailsBeforeAnyWork()
    {
        // MiniCPM-MoE: a recognised family the engine does not run (no preset: the Mixtral config relabelled).
        var (_, _, config, _) = SyntheticCheckpoint.Plan("mixtral");
        config["architectures"] = new JsonArray("MiniCPMForCausalLM");
        config["model_type"] = "minicpm";
        config["num_experts"] = config["num_local_experts"]!.DeepClone();
        var model = TinyCalibrationModel.NewPath("minicpm");
        Directory.CreateDirectory(model);
        File.WriteAllText(Path.Combine(model, "config.json"), config.ToJsonString());
        var output = TinyCalibrationModel.NewPath("minicpm-out");

        var ex = await Assert.ThrowsAsync<MoeCompressException>(() => Calibrator.RunAsync(new CalibrateOptions
        {
            Model = model, Data = WriteTokenData(), Out = output,
        }));
        Assert.Equal(ErrorKind.Infeasible, ex.Kind);
        Assert.Contains("minicpm", ex.Message);
        Assert.False(Directory.Exists(output));
    }

    [Fact]
    public async Task CancellationLeavesNoOutputBehind()
    {
        var output = TinyCalibrationModel.NewPath("cancelled");
        using var cts = new CancellationTokenSource();
        var progress = new InlineProgress(line =>
        {
            if (line.Contains("layer 2/4")) cts.Cancel();
        });
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => Calibrator.RunAsync(new CalibrateOptions
        {
            Model = TinyCalibrationModel.Mixtral, Data = WriteTokenData(), Samples = 4, SeqLen = 16, Out = output,
        }, progress, cts.Token));
        Assert.False(Directory.Exists(output));
        // Only the journal of the finished layers stays beside it (what --resume continues; CalibrateResumeTests).
        Assert.Equal([$".{Path.GetFileName(output)}.calibrate-journal"],
            Directory.GetDirectories(Path.GetDirectoryName(output)!, $".{Path.GetFileName(output)}*").Select(Path.GetFileName));
    }

    [Fact]
    public async Task TokenIdsOutsideTheModelVocabularyAreRejectedUpFront()
    {
        var output = TinyCalibrationModel.NewPath("oov");
        var ex = await Assert.ThrowsAsync<MoeCompressException>(() => Calibrator.RunAsync(new CalibrateOptions
        {
            Model = TinyCalibrationModel.Mixtral, Data = WriteTokenData(maxId: 1000), Samples = 2, SeqLen = 16, Out = output,
        }));
        Assert.Equal(ErrorKind.Usage, ex.Kind);
        Assert.Contains("256 embedding rows", ex.Message);
        Assert.False(Directory.Exists(output));
    }

    [Fact]
    public async Task BadOptionsAndAnExistingOutputFailWithUsageOrIo()
    {
        var bad = await Assert.ThrowsAsync<MoeCompressException>(() => Calibrator.RunAsync(new CalibrateOptions
        {
            Model = TinyCalibrationModel.Mixtral, Data = WriteTokenData(), MicroBatch = 0,
        }));
        Assert.Equal(ErrorKind.Usage, bad.Kind);

        var existing = TinyCalibrationModel.NewPath("exists");
        Directory.CreateDirectory(existing);
        var io = await Assert.ThrowsAsync<MoeCompressException>(() => Calibrator.RunAsync(new CalibrateOptions
        {
            Model = TinyCalibrationModel.Mixtral, Data = WriteTokenData(), Out = existing,
        }));
        Assert.Equal(ErrorKind.Io, io.Kind);

        var intoModel = await Assert.ThrowsAsync<MoeCompressException>(() => Calibrator.RunAsync(new CalibrateOptions
        {
            Model = TinyCalibrationModel.Mixtral, Data = WriteTokenData(), Out = TinyCalibrationModel.Mixtral, Overwrite = true,
        }));
        Assert.Equal(ErrorKind.Usage, intoModel.Kind);
    }

    private sealed class InlineProgress(Action<string> report) : IProgress<string>
    {
        public void Report(string value) => report(value);
    }
}
