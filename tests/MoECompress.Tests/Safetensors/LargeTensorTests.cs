using MoECompress.Formats.Safetensors;
using TorchSharp;

namespace MoECompress.Tests.Safetensors;

/// <summary>
/// Tensors larger than the 16 MiB chunk of every streaming path (writer spans, torch tensors, in-kernel and mapped
/// copies, ToTensor), so the chunk loops run more than once. ~20 MB each: still quick.
/// </summary>
[Collection(nameof(KernelCopySwitch))]
public class LargeTensorTests
{
    private const int Elements = 5_000_003; // × 4 bytes ≈ 20 MB, not a multiple of the chunk

    [Fact]
    public void LargeTensorsSurviveEveryStreamingPath()
    {
        using var tmp = new TempDirectory();
        using var scope = torch.NewDisposeScope();
        var values = torch.arange(Elements, dtype: torch.ScalarType.Float32).mul_(0.5);
        var bytes = values.bytes.ToArray();
        var plan = new[]
        {
            new TensorSpec("from_span", SafetensorsDType.F32, new long[] { Elements }),
            new TensorSpec("from_tensor", SafetensorsDType.F32, new long[] { Elements }),
        };
        using (var w = CheckpointWriter.Create(tmp.Sub("a"), plan, new CheckpointWriterOptions { FlushToDisk = false }))
        {
            w.Write("from_span", bytes);
            w.Write("from_tensor", values);
            w.Commit();
        }

        using (var f = SafetensorsFile.Open(Path.Combine(tmp.Sub("a"), "model.safetensors")))
        {
            Assert.True(f.GetBytes("from_span").SequenceEqual(bytes));
            Assert.True(f.GetBytes("from_tensor").SequenceEqual(bytes));
            var back = f.ToTensor("from_tensor");
            Assert.True(back.eq(values).all().item<bool>());
            var asDouble = f.ToTensor("from_span", torch.ScalarType.Float64);
            Assert.Equal(0.5 * (Elements - 1), asDouble[Elements - 1].item<double>());
        }

        // In-kernel copy (Linux) and the portable mapped-write path must give the same bytes.
        CheckpointCopier.Copy(tmp.Sub("a"), tmp.Sub("kernel"));
        NativeFileOps.KernelCopyEnabled = false;
        try { CheckpointCopier.Copy(tmp.Sub("a"), tmp.Sub("mapped")); }
        finally { NativeFileOps.KernelCopyEnabled = true; }
        var original = File.ReadAllBytes(Path.Combine(tmp.Sub("a"), "model.safetensors"));
        Assert.Equal(original, File.ReadAllBytes(Path.Combine(tmp.Sub("kernel"), "model.safetensors")));
        Assert.Equal(original, File.ReadAllBytes(Path.Combine(tmp.Sub("mapped"), "model.safetensors")));
        Assert.Empty(CheckpointManifest.Read(tmp.Sub("mapped")).Verify(tmp.Sub("mapped")));
    }
}

/// <summary>Tests that flip <see cref="NativeFileOps.KernelCopyEnabled"/> run one at a time.</summary>
[CollectionDefinition(nameof(KernelCopySwitch))]
public class KernelCopySwitch;
