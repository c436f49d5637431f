using MoECompress.Compression.Reporting;

namespace MoECompress.Cli.Rendering;

/// <summary>
/// The progress sink commands hand to library calls: takes plain messages and structured
/// <see cref="ProgressUpdate"/>s and renders them on stderr — progress bars in a terminal, throttled plain lines
/// elsewhere (see <see cref="ProgressRenderer"/>) — never mixed into stdout, which carries the command's result.
/// </summary>
internal sealed class ConsoleProgress(ProgressRenderer renderer) : IProgress<string>, IProgress<ProgressUpdate>
{
    /// <summary>The sink of the invocation whose stderr is <paramref name="stderr"/> (plain lines for any other writer).</summary>
    public static ConsoleProgress For(TextWriter stderr) =>
        new(stderr is PausingWriter { Owner: { } output } ? output.Renderer : new ProgressRenderer(ProgressMode.Lines, stderr));

    public void Report(string value) => renderer.Report(value);

    public void Report(ProgressUpdate value) => renderer.Report(value);
}
