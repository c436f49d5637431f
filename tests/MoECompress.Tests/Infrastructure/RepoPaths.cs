using System.Runtime.CompilerServices;

namespace MoECompress.Tests.Infrastructure;

/// <summary>
/// Paths inside the repository, found from this source file's location (so tests work from any build folder,
/// MOE_BUILD_DIR included).
/// </summary>
internal static class RepoPaths
{
    public static string Root { get; } = FindRoot();

    /// <summary>tests/data: the reference configs and tokenizers (see its README for sources and licences).</summary>
    public static string TestData => Path.Combine(Root, "tests", "data");

    private static string FindRoot([CallerFilePath] string sourceFile = "")
    {
        var dir = Path.GetDirectoryName(sourceFile);
        while (dir is not null && !File.Exists(Path.Combine(dir, "MoECompress.sln"))) dir = Path.GetDirectoryName(dir);
        return dir ?? throw new InvalidOperationException($"repository root not found above {sourceFile}");
    }
}
