namespace MoECompress.Cli.Rendering;

/// <summary>Writes report.json and report.md into a folder, each through a temporary file renamed into place.</summary>
internal static class ReportFiles
{
    public static void Write(string dir, string json, string markdown)
    {
        Directory.CreateDirectory(dir);
        WriteAtomic(Path.Combine(dir, "report.json"), json);
        WriteAtomic(Path.Combine(dir, "report.md"), markdown);
    }

    public static void WriteAtomic(string path, string content)
    {
        var tmp = path + ".tmp-" + Guid.NewGuid().ToString("N")[..8];
        File.WriteAllText(tmp, content);
        File.Move(tmp, path, overwrite: true);
    }
}
