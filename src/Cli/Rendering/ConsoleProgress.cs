namespace MoECompress.Cli.Rendering;

/// <summary>
/// Plain progress lines on stderr ("[12:01:02] message"): readable in terminals, CI logs and pipes alike, and never
/// mixed into stdout, which carries the command's result (text or JSON).
/// </summary>
internal sealed class ConsoleProgress(TextWriter stderr, bool quiet = false) : IProgress<string>
{
    private readonly object _gate = new();

    public void Report(string value)
    {
        if (quiet) return;
        lock (_gate) stderr.WriteLine($"[{DateTime.Now:HH:mm:ss}] {value}");
    }
}
