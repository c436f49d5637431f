using MoECompress.Compression.Reporting;

namespace MoECompress.Cli.Rendering;

/// <summary>Writes report.json, report.md (and report.html when given) into a folder, each through a temporary file renamed into place.</summary>
internal static class ReportFiles
{
    public static void Write(string dir, string json, string markdown, HtmlReport? html = null)
    {
        Directory.CreateDirectory(dir);
        WriteAtomic(Path.Combine(dir, "report.json"), json);
        WriteAtomic(Path.Combine(dir, "report.md"), markdown);
        html?.Write(Path.Combine(dir, HtmlReport.FileName));
    }

    public static void WriteAtomic(string path, string content)
    {
        var tmp = path + ".tmp-" + Guid.NewGuid().ToString("N")[..8];
        File.WriteAllText(tmp, content);
        File.Move(tmp, path, overwrite: true);
    }
}
