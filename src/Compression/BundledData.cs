namespace MoECompress.Compression;

/// <summary>
/// Finds what ships with moe-compress: the calibration set (<c>calibration/calibration.jsonl</c>), the held-out text
/// (<c>calibration/heldout</c>) and the demo model (<c>models/moe-demo</c>). Looked for beside the running program (an
/// installed or published tool carries them there), then in the current folder and every folder above it (a source
/// checkout).
/// </summary>
public static class BundledData
{
    public static string CalibrationSet { get; } = Path.Combine("calibration", "calibration.jsonl");
    public static string HeldOutText { get; } = Path.Combine("calibration", "heldout");
    public static string DemoModel { get; } = Path.Combine("models", "moe-demo");

    /// <summary>The folders searched, in order.</summary>
    public static IReadOnlyList<string> SearchRoots()
    {
        var roots = new List<string>();
        Add(roots, AppContext.BaseDirectory, 1);
        Add(roots, Directory.GetCurrentDirectory(), int.MaxValue);
        return roots;
    }

    /// <summary>Full path of the bundled calibration set, or null when none is found.</summary>
    public static string? LocateCalibrationSet() => Locate(CalibrationSet, File.Exists);

    /// <summary>Full path of the bundled held-out folder (holding a .txt or .jsonl file), or null.</summary>
    public static string? LocateHeldOutText() => Locate(HeldOutText, dir => Directory.Exists(dir) &&
        Directory.EnumerateFiles(dir).Any(f => f.EndsWith(".txt", StringComparison.OrdinalIgnoreCase) ||
                                               f.EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase)));

    /// <summary>Full path of the bundled demo model (a folder with config.json), or null.</summary>
    public static string? LocateDemoModel() => Locate(DemoModel, dir => File.Exists(Path.Combine(dir, "config.json")));

    /// <summary>A one-line description of where <paramref name="relativePath"/> was looked for, for error messages.</summary>
    public static string Searched(string relativePath) => $"{relativePath} under {string.Join(", ", SearchRoots())}";

    private static string? Locate(string relativePath, Func<string, bool> accept)
    {
        foreach (var root in SearchRoots())
        {
            var candidate = Path.Combine(root, relativePath);
            if (accept(candidate)) return Path.GetFullPath(candidate);
        }
        return null;
    }

    private static void Add(List<string> roots, string start, int levels)
    {
        var dir = new DirectoryInfo(Path.TrimEndingDirectorySeparator(Path.GetFullPath(start)));
        for (var i = 0; dir is not null && i < levels; i++, dir = dir.Parent)
            if (!roots.Contains(dir.FullName)) roots.Add(dir.FullName);
    }
}
