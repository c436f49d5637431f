using MoECompress.Compression.Model;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Families;
using static TorchSharp.torch;

namespace MoECompress.Compression.Quantization;

/// <summary>
/// The dequantized weights of a layer's quantized experts, kept in a temporary file (float32, deleted on dispose) while
/// the layer itself is not in memory (<see cref="Pipeline.MemoryPlan.ReleasesLayerForSolves"/>), and put into the
/// reloaded layer before it feeds the next one (compressed propagation). Float32 so that the reloaded layer ends up
/// with exactly the values a layer held throughout gets (the same conversion to its held type happens on copy).
/// </summary>
internal sealed class ExpertWeightSpill : IDisposable
{
    private readonly FileStream _file;
    private readonly List<(int Expert, ExpertProjection Projection, long Offset, long[] Shape)> _entries = [];
    private long _length;

    public ExpertWeightSpill(string? directory)
    {
        Path = System.IO.Path.Combine(directory ?? System.IO.Path.GetTempPath(), $"moe-compress-experts-{Environment.ProcessId}-{Guid.NewGuid():N}.bin");
        try
        {
            _file = new FileStream(Path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, 1,
                FileOptions.DeleteOnClose | FileOptions.RandomAccess);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new MoeCompressException(ErrorKind.Io, $"{Path}: cannot create the quantized-expert spill file: {ex.Message}", ex);
        }
    }

    /// <summary>The temporary file.</summary>
    public string Path { get; }

    /// <summary>Bytes written so far.</summary>
    public long Length => _length;

    /// <summary>Appends one projection's dequantized weight [out, in].</summary>
    public void Write(int expert, ExpertProjection projection, Tensor dequantized)
    {
        using var scope = NewDisposeScope();
        var c = dequantized.to(ScalarType.Float32).cpu().contiguous();
        try
        {
            RandomAccess.Write(_file.SafeFileHandle, c.bytes, _length);
        }
        catch (IOException ex)
        {
            throw new MoeCompressException(ErrorKind.Io, $"{Path}: writing quantized expert weights failed: {ex.Message}", ex);
        }
        _entries.Add((expert, projection, _length, c.shape));
        _length += c.NumberOfElements * sizeof(float);
    }

    /// <summary>Copies every spilled projection into <paramref name="block"/>'s experts, one projection in memory at a time.</summary>
    public void RestoreInto(MoEBlock block)
    {
        foreach (var (expert, projection, offset, shape) in _entries)
        {
            using var t = empty(shape, ScalarType.Float32);
            var span = t.bytes;
            var done = 0;
            while (done < span.Length)
            {
                var n = RandomAccess.Read(_file.SafeFileHandle, span[done..], offset + done);
                if (n <= 0) throw new MoeCompressException(ErrorKind.Io, $"{Path}: quantized-expert spill file ended early");
                done += n;
            }
            Replace(block, expert, projection, t);
        }
    }

    /// <summary>Puts one projection's dequantized weight into <paramref name="block"/>'s expert (converted to the type it holds).</summary>
    public static void Replace(MoEBlock block, int expert, ExpertProjection projection, Tensor dequantized)
    {
        var mlp = block.Experts[expert];
        var target = projection switch
        {
            ExpertProjection.Gate => mlp.Gate,
            ExpertProjection.Up => mlp.Up,
            ExpertProjection.Down => mlp.Down,
            _ => throw new ArgumentOutOfRangeException(nameof(projection), projection, null),
        };
        using var noGrad = no_grad();
        target.copy_(dequantized);
    }

    public void Dispose() => _file.Dispose();
}
