using MoECompress.Tests.Infrastructure;

namespace MoECompress.Tests.Cli;

[Collection(nameof(MoECompress.Tests.Reliability.LibtorchThreadCount))] // sets libtorch to 1 thread
public class TrainReferenceCommandTests
{
    [Fact]
    public void TrainsATinyReferenceModelThatInspectReads()
    {
        var root = Path.Combine(Path.GetTempPath(), "moe-cli-train-" + Guid.NewGuid().ToString("N")[..8]);
        try
        {
            var data = Path.Combine(root, "train");
            Directory.CreateDirectory(data);
            File.WriteAllText(Path.Combine(data, "prose.txt"), string.Concat(Enumerable.Repeat(
                "The experts of a mixture route each token to a few of their number.\n", 40)));
            File.WriteAllText(Path.Combine(data, "code.txt"), string.Concat(Enumerable.Repeat(
                "for (int i = 0; i < n; i++) { sum += values[i]; }\n", 40)));
            var output = Path.Combine(root, "model");
            var r = CliRunner.Run("train-reference", "--train-data", data,
                "--tokenizer", Path.Combine(RepoPaths.TestData, "tokenizers", "mistral-v1", "tokenizer.model"), "--output", output,
                "--layers", "1", "--hidden", "32", "--intermediate", "32", "--experts", "4", "--top-k", "2", "--heads", "2", "--kv-heads", "1",
                "--seq-len", "16", "--batch", "2", "--steps", "2", "--warmup", "1", "--threads", "1", "--log-every", "1");
            Assert.True(r.ExitCode == 0, r.Stderr);
            Assert.Contains("2 steps", r.Stdout);

            var inspect = CliRunner.Run("inspect", output, "--json");
            Assert.True(inspect.ExitCode == 0, inspect.Stderr);
            Assert.Contains("\"family\": \"mixtral\"", inspect.Stdout);
        }
        finally
        {
            if (Directory.Exists(root)) Directory.Delete(root, true);
        }
    }

    [Fact]
    public void ResumeContinuesAStoppedRunToTheSameFiles()
    {
        using var f = new MoECompress.Tests.Training.ResumableTrainingFixture();
        var resumed = f.Output("out");
        var r = CliRunner.Run(f.CliArguments(resumed, 4, "--checkpoint-every", "1"));
        Assert.True(r.ExitCode == 0, r.Stderr);
        var straight = f.Output("uninterrupted");
        Directory.Move(resumed, straight); // the manifest records the output path: the run to compare writes to the same
        var options = f.Options(resumed, steps: 4);
        Assert.Equal(options.CheckpointFolder(), resumed + ".training");
        MoECompress.Tests.Training.ResumableTrainingFixture.TrainAndStop(options, stopAfter: 2);
        var again = CliRunner.Run(f.CliArguments(resumed, 4));
        Assert.Equal(2, again.ExitCode);
        Assert.Contains("--resume", again.Stderr);
        var continued = CliRunner.Run(f.CliArguments(resumed, 4, "--resume"));
        Assert.True(continued.ExitCode == 0, continued.Stderr);
        MoECompress.Tests.Training.ResumableTrainingFixture.AssertSameCheckpoint(straight, resumed);

        var changed = CliRunner.Run(f.CliArguments(f.Output("other"), 4, "--resume", "--checkpoint-dir", resumed + ".x"));
        Assert.Equal(2, changed.ExitCode);
        Assert.Single(changed.StderrLines);
        Assert.Contains("--resume: no checkpoint", changed.Stderr);
    }

    [Fact]
    public void MissingRequiredOptionIsAUsageError()
    {
        var r = CliRunner.Run("train-reference", "--train-data", "x");
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("--tokenizer", r.Stderr);
    }
}
