using MoECompress.Cli.Rendering;
using MoECompress.Compression.Reporting;
using Spectre.Console;

namespace MoECompress.Tests.Cli;

/// <summary>How progress reaches stderr: throttled plain lines off a terminal, every line with --verbose, nothing with --quiet, bars on a terminal.</summary>
public class ProgressRenderingTests
{
    private static ProgressUpdate Layer(string stage, int layer, int layers) =>
        new(stage, $"layer {layer + 1}/{layers}") { Layer = layer, NumLayers = layers, Done = layer + 1, Total = layers, Unit = "layers" };

    private static string[] Lines(StringWriter w) => w.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);

    [Fact]
    public void PlainLinesPrintOneLinePerStageChangeAndThrottleTheRest()
    {
        var err = new StringWriter();
        var r = new ProgressRenderer(ProgressMode.Lines, err);
        for (var i = 0; i < 200; i++) r.Report(Layer("calibrate", i % 40, 40));
        for (var i = 0; i < 200; i++) r.Report(new ProgressUpdate("score", $"scoring: {i + 1}/200 windows") { Done = i + 1, Total = 200 });
        for (var i = 0; i < 50; i++) r.Report($"message {i}");
        r.Finish();
        var lines = Lines(err);
        // Fast updates: the stage-change line of each stage, the first plain message, and the summary.
        Assert.Equal(4, lines.Length);
        Assert.Contains("calibrate: layer 1/40", lines[0]);
        Assert.Contains("score: scoring: 1/200 windows", lines[1]);
        Assert.Contains("message 0", lines[2]);
        Assert.Matches(@"done in \d+\.\d s: calibrate \d+\.\d s, score \d+\.\d s", lines[3]);
    }

    [Fact]
    public void PlainLinesRepeatAStageOnlyAfterTheIntervalAndAQuarterOfProgress()
    {
        var err = new StringWriter();
        var r = new ProgressRenderer(ProgressMode.Lines, err, lineInterval: TimeSpan.Zero);
        for (var i = 0; i < 40; i++) r.Report(Layer("calibrate", i, 40));
        var lines = Lines(err);
        // 1/40 at the stage change, then a line each time a quarter more is done: 11/40, 21/40, 31/40, and 40/40.
        Assert.Equal(["1/40", "11/40", "21/40", "31/40", "40/40"], lines.Select(l => l.Split(' ')[^2]).ToArray());
    }

    [Fact]
    public void StepsOfAMultiStepRunPrintOneLineEachAndHideInnerStages()
    {
        var err = new StringWriter();
        var r = new ProgressRenderer(ProgressMode.Lines, err);
        for (var step = 1; step <= 8; step++)
        {
            r.Report(new ProgressUpdate("evaluate", $"step {step}/8: evaluate") { Step = step, Steps = 8 });
            for (var i = 0; i < 100; i++) r.Report(Layer(i % 2 == 0 ? "evaluate" : "score", i % 4, 4));
            r.Report("tokenizing something");
        }
        r.Finish();
        var lines = Lines(err);
        Assert.Equal(9, lines.Length);
        Assert.Contains("step 8/8: evaluate", lines[7]);
        Assert.Contains("done in", lines[8]);
    }

    [Fact]
    public void VerbosePrintsEveryMessageAndQuietNothing()
    {
        var verbose = new StringWriter();
        var quiet = new StringWriter();
        var v = new ProgressRenderer(ProgressMode.Verbose, verbose);
        var q = new ProgressRenderer(ProgressMode.Quiet, quiet);
        foreach (var r in new[] { v, q })
        {
            for (var i = 0; i < 30; i++) r.Report(Layer("calibrate", i, 30));
            r.Report("a message");
            r.Finish();
        }
        Assert.Equal(32, Lines(verbose).Length);
        Assert.Equal("", quiet.ToString());
    }

    [Fact]
    public void BarsOnATerminalShowTheStageAndItsPercentageAndStopBeforeOtherOutput()
    {
        var screen = new StringWriter();
        var synced = TextWriter.Synchronized(screen);   // its writes lock the wrapper, so reads below can too
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Ansi = AnsiSupport.Yes, ColorSystem = ColorSystemSupport.NoColors, Interactive = InteractionSupport.Yes,
            Out = new AnsiConsoleOutput(synced),
        });
        console.Profile.Width = 160;
        var output = new CliOutput(new StringWriter(), synced, console);
        output.Configure(ProgressMode.Bars);
        var progress = ConsoleProgress.For(output.Stderr);
        for (var i = 0; i < 4; i++) progress.Report(Layer("calibrate", i, 8));
        // The live display redraws on its own thread; wait (bounded) until it has drawn the half-done bar.
        var clock = System.Diagnostics.Stopwatch.StartNew();
        bool drawnHalf = false;
        while (!drawnHalf && clock.Elapsed < TimeSpan.FromSeconds(10))
        {
            Thread.Sleep(100);
            lock (synced) drawnHalf = screen.ToString().Contains("50%", StringComparison.Ordinal);
        }
        Assert.True(drawnHalf, "the bar at 4/8 layers was never drawn with 50%");
        output.Stdout.WriteLine("result");   // stops the live display first
        progress.Report(new ProgressUpdate("score", "scoring: 1/2 windows") { Done = 1, Total = 2 });
        output.Renderer.Finish();
        var text = screen.ToString();
        Assert.Contains("calibrate: layer 4/8", text);
        Assert.Contains("scoring: 1/2 windows", text);
        Assert.Contains("done in", text);
    }

    [Fact]
    public void GlobalQuietAndVerboseOptionsReachEveryCommand()
    {
        var quiet = CliRunner.Run("synthesize", "mixtral", Path.Combine(Path.GetTempPath(), "moe-q-" + Guid.NewGuid().ToString("N")[..8]), "--quiet");
        Assert.Equal(0, quiet.ExitCode);
        Assert.Equal("", quiet.Stderr);
        var verbose = CliRunner.Run("--verbose", "synthesize", "mixtral", Path.Combine(Path.GetTempPath(), "moe-v-" + Guid.NewGuid().ToString("N")[..8]));
        Assert.Equal(0, verbose.ExitCode);
        Assert.NotEqual("", verbose.Stderr);
    }
}
