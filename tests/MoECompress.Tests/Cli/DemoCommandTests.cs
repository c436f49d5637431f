namespace MoECompress.Tests.Cli;

/// <summary>The README's main command on the bundled demo model, with small settings to stay fast.</summary>
public class DemoCommandTests
{
    [Fact]
    public void DemoCalibratesTheBundledModelAndReportsEveryHeldOutDomain()
    {
        var r = CliRunner.Run("demo", "--samples", "2", "--tokens-per-domain", "300");
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains("models", r.Stdout);
        Assert.Contains("moe-demo", r.Stdout);
        foreach (var domain in new[] { "arxiv", "c4", "github_oss_with_stack", "wikipedia" })
        {
            var line = r.Stdout.Split('\n').Single(l => l.StartsWith(domain + " ", StringComparison.Ordinal));
            var ppl = double.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[^1], System.Globalization.CultureInfo.InvariantCulture);
            Assert.InRange(ppl, 1.0, 32000.0);
        }
        Assert.Contains("layer 0:", r.Stdout);
        // Off a terminal the whole demo stays short: one progress line per step, the summary, the result.
        int lines = r.Stdout.TrimEnd().Split('\n').Length + r.Stderr.TrimEnd().Split('\n').Length;
        Assert.True(lines <= 40, $"{lines} lines:\n{r.Stderr}");
        Assert.Equal(8, r.StderrLines.Count(l => l.Contains("] step ", StringComparison.Ordinal)));
    }

    [Fact]
    public void DemoWithAMissingModelFailsWithOneLine()
    {
        var missing = Path.Combine(Path.GetTempPath(), "moe-no-such-model-" + Guid.NewGuid().ToString("N")[..8]);
        var r = CliRunner.Run("demo", "--model", missing);
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains(missing, r.StderrLines.Single());
    }
}
