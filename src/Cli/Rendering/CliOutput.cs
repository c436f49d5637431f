using Spectre.Console;

namespace MoECompress.Cli.Rendering;

/// <summary>
/// stdout and stderr of one invocation plus its progress renderer. Commands write results to <see cref="Stdout"/> and
/// take their progress sink from <see cref="ConsoleProgress.For"/>; both writers stop live progress bars before they
/// write, so results and errors never tear through a bar.
/// </summary>
internal sealed class CliOutput
{
    /// <summary>Environment variable that forces the progress style: <c>bars</c> or <c>lines</c> (default: bars on a terminal).</summary>
    public const string ProgressVariable = "MOE_COMPRESS_PROGRESS";

    private readonly TextWriter _stderr;
    private readonly IAnsiConsole? _terminal;

    /// <param name="stdout">Where results go.</param>
    /// <param name="stderr">Where progress and errors go.</param>
    /// <param name="terminal">A console for progress bars when stderr is an interactive terminal, else null.</param>
    public CliOutput(TextWriter stdout, TextWriter stderr, IAnsiConsole? terminal)
    {
        _stderr = stderr;
        _terminal = terminal;
        Renderer = new ProgressRenderer(ProgressMode.Lines, stderr);
        Stdout = new PausingWriter(stdout, this);
        Stderr = new PausingWriter(stderr, this);
    }

    public TextWriter Stdout { get; }
    public TextWriter Stderr { get; }
    public ProgressRenderer Renderer { get; private set; }

    /// <summary>True when progress bars can be drawn.</summary>
    public bool IsTerminal => _terminal is not null;

    /// <summary>Chooses the progress mode (after parsing the global options).</summary>
    public void Configure(ProgressMode mode) =>
        Renderer = new ProgressRenderer(mode, _stderr, mode == ProgressMode.Bars ? new ProgressBars(_terminal!) : null);

    /// <summary>The console for bars when the process's own stderr is an interactive terminal (or bars are forced), else null.</summary>
    public static IAnsiConsole? TerminalFor(TextWriter stderr)
    {
        var forced = Environment.GetEnvironmentVariable(ProgressVariable);
        if (forced == "lines" || !ReferenceEquals(stderr, Console.Error)) return null;
        if (forced != "bars" && (Console.IsErrorRedirected || Environment.GetEnvironmentVariable("TERM") is "dumb" or null or "")) return null;
        return AnsiConsole.Create(new AnsiConsoleSettings
        {
            Ansi = AnsiSupport.Detect,
            Interactive = InteractionSupport.Yes,
            Out = new AnsiConsoleOutput(stderr),
        });
    }
}
