namespace MoECompress.Compression.Evaluation;

/// <summary>
/// Finds the held-out text that ships with the tool (<c>calibration/heldout</c>: one .txt file per domain), used by
/// <see cref="Evaluator.RunAsync"/> when no data file is given. Looked for beside the running assembly (an installed
/// tool carries it there), then in the current folder and the folders above it (a source checkout).
/// </summary>
public static class BundledEvaluationData
{
    /// <summary>The bundled folder's path relative to the tool or repository root.</summary>
    public static string RelativePath { get; } = Path.Combine("calibration", "heldout");

    /// <summary>The folders searched, in order.</summary>
    public static IReadOnlyList<string> SearchRoots()
    {
        var roots = new List<string>();
        AddWithParents(roots, AppContext.BaseDirectory, 1);
        AddWithParents(roots, Directory.GetCurrentDirectory(), int.MaxValue);
        return roots;
    }

    /// <summary>The full path of the bundled held-out folder, or null when none holds a .txt or .jsonl file.</summary>
    public static string? Locate()
    {
        foreach (var root in SearchRoots())
        {
            var candidate = Path.Combine(root, RelativePath);
            if (Directory.Exists(candidate) &&
                Directory.EnumerateFiles(candidate).Any(f => f.EndsWith(".txt", StringComparison.OrdinalIgnoreCase) ||
                                                             f.EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase)))
                return Path.GetFullPath(candidate);
        }
        return null;
    }

    private static void AddWithParents(List<string> roots, string start, int levels)
    {
        var dir = new DirectoryInfo(Path.TrimEndingDirectorySeparator(Path.GetFullPath(start)));
        for (var i = 0; dir is not null && i < levels; i++, dir = dir.Parent)
            if (!roots.Contains(dir.FullName)) roots.Add(dir.FullName);
    }
}
