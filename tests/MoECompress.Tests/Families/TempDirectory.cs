namespace MoECompress.Tests.Families;

/// <summary>A fresh path under the system temp folder (not created), deleted with everything in it on dispose.</summary>
internal sealed class TempDirectory : IDisposable
{
    public string Root { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "moe-families-" + Guid.NewGuid().ToString("N")[..12]);
    public string Path => System.IO.Path.Combine(Root, "ckpt");

    public TempDirectory() => Directory.CreateDirectory(Root);

    public string Sub(string name) => System.IO.Path.Combine(Root, name);

    public void Dispose()
    {
        try { Directory.Delete(Root, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
