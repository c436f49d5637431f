namespace MoECompress.Cli.Rendering;

/// <summary>How progress is shown on stderr.</summary>
internal enum ProgressMode
{
    /// <summary>Nothing (<c>--quiet</c>).</summary>
    Quiet,
    /// <summary>Plain lines, throttled: one per stage change, at most one per ~5 s per stage (pipes, CI, log files).</summary>
    Lines,
    /// <summary>Every message as a line (<c>--verbose</c>).</summary>
    Verbose,
    /// <summary>Spectre.Console progress bars, one per stage (an interactive terminal).</summary>
    Bars,
}
