using System.Runtime.CompilerServices;
using System.Text;
using MoECompress.Formats.Safetensors;
using MoECompress.Formats.Synthetic;

namespace MoECompress.Tests.Families;

/// <summary>
/// The tensor listing (name, dtype, shape, sorted by name) of a written synthetic checkpoint, approved as a golden file.
/// To regenerate after an intended change, run with MOE_UPDATE_GOLDEN=1, review the diff, and commit it.
/// </summary>
public class GoldenListingTests
{
    private static string GoldenPath(string file, [CallerFilePath] string source = "") =>
        Path.Combine(Path.GetDirectoryName(source)!, "Golden", file);

    [Theory]
    [InlineData("mixtral")]
    public void TensorListingMatchesTheApprovedGolden(string preset)
    {
        using var dir = new TempDirectory();
        SyntheticCheckpoint.Write(preset, dir.Path);
        using var ckpt = SafetensorsCheckpoint.Open(dir.Path);
        var listing = new StringBuilder();
        foreach (var name in ckpt.Names.Order(StringComparer.Ordinal))
        {
            var info = ckpt.GetInfo(name);
            listing.Append(name).Append('\t').Append(info.DType.ToHeaderName()).Append("\t[").AppendJoin(", ", info.Shape).Append("]\n");
        }
        var path = GoldenPath($"{preset}-synthetic.tensors.txt");
        if (Environment.GetEnvironmentVariable("MOE_UPDATE_GOLDEN") == "1") File.WriteAllText(path, listing.ToString());
        Assert.True(File.Exists(path), $"golden file {path} is missing (run once with MOE_UPDATE_GOLDEN=1 and review it)");
        Assert.Equal(File.ReadAllText(path), listing.ToString());
    }
}
