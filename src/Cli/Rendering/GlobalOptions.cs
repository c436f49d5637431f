using System.CommandLine;

namespace MoECompress.Cli.Rendering;

/// <summary>Options every command accepts (recursive on the root command): how much progress to print.</summary>
internal sealed class GlobalOptions
{
    public Option<bool> Quiet { get; } = new("--quiet", "-q") { Description = "Print no progress (results and errors only)", Recursive = true };

    public Option<bool> Verbose { get; } = new("--verbose") { Description = "Print every progress message as a plain line", Recursive = true };

    public void AddTo(RootCommand root)
    {
        root.Options.Add(Quiet);
        root.Options.Add(Verbose);
    }

    /// <summary>The progress mode the parsed options ask for on a terminal (<paramref name="terminal"/>) or elsewhere.</summary>
    public ProgressMode Mode(ParseResult parse, bool terminal) =>
        parse.GetValue(Quiet) ? ProgressMode.Quiet
        : parse.GetValue(Verbose) ? ProgressMode.Verbose
        : terminal ? ProgressMode.Bars
        : ProgressMode.Lines;
}
