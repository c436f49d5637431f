namespace MoECompress.Tests.Cli;

public class UsageTests
{
    [Fact]
    public void UnknownOptionIsAUsageErrorWithExitCode2()
    {
        var r = CliRunner.Run("--no-such-option");
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("--no-such-option", r.Stderr);
    }

    [Fact]
    public void HelpListsTheCommandsAndSucceeds()
    {
        var r = CliRunner.Run("--help");
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("moe-compress", r.Stdout);
    }
}
