namespace MoECompress.Compression.Calibration;

/// <summary>
/// Finds the calibration set shipped with moe-compress (<c>calibration/calibration.jsonl</c>): next to the running
/// program or in one of its parent folders (a source checkout), else in the current folder or one of its parents.
/// </summary>
public static class BundledCalibrationData
{
    /// <summary>Path of the bundled file relative to the folder holding it.</summary>
    public static readonly string RelativePath = Path.Combine("calibration", "calibration.jsonl");

    /// <summary>Full path of the bundled calibration set, or null when none is found.</summary>
    public static string? Locate()
    {
        foreach (var start in new[] { AppContext.BaseDirectory, Environment.CurrentDirectory })
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                var candidate = Path.Combine(dir.FullName, RelativePath);
                if (File.Exists(candidate)) return candidate;
            }
        return null;
    }
}
