using System.Text;

namespace MoECompress.Cli.Rendering;

/// <summary>A writer of a <see cref="CliOutput"/> that stops its live progress bars before each write to <paramref name="inner"/>.</summary>
internal sealed class PausingWriter(TextWriter inner, CliOutput owner) : TextWriter
{
    /// <summary>The invocation this writer belongs to.</summary>
    public CliOutput Owner => owner;

    private void BeforeWrite() => owner.Renderer.Pause();

    public override Encoding Encoding => inner.Encoding;

    public override void Write(char value)
    {
        BeforeWrite();
        inner.Write(value);
    }

    public override void Write(string? value)
    {
        BeforeWrite();
        inner.Write(value);
    }

    public override void Write(char[] buffer, int index, int count)
    {
        BeforeWrite();
        inner.Write(buffer, index, count);
    }

    public override void WriteLine(string? value)
    {
        BeforeWrite();
        inner.WriteLine(value);
    }

    public override void Flush() => inner.Flush();

    public override string ToString() => inner.ToString() ?? "";
}
