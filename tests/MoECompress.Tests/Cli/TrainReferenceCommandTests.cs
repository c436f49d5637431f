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
    public void MissingRequiredOptionIsAUsageError()
    {
        var r = CliRunner.Run("train-reference", "--train-data", "x");
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("--tokenizer", r.Stderr);
    }
}
