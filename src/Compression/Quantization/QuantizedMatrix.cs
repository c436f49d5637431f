using MoECompress.Formats.Quantized;
using static TorchSharp.torch;

namespace MoECompress.Compression.Quantization;

/// <summary>
/// A quantized weight matrix W [out, in]: integer codes q ∈ [0, 2^b − 1] per weight, and per output row and group g a
/// scale s and zero point z, so that Ŵ[r, c] = s[r, g(c)] · (q[r, c] − z[r, g(c)]) with g(c) = <see cref="GroupIndex"/>[c]
/// (GPTQ's g_idx; c / group size unless act-order permuted the columns when the groups were formed). For 1-bit
/// (sign × scale) q ∈ {0, 1} and Ŵ = s · (2q − 1); <see cref="Zeros"/> then holds 0.5 so that the formula
/// s'·(q − z) with s' = 2s also holds. Owns its tensors.
/// </summary>
public sealed class QuantizedMatrix : IDisposable
{
    /// <summary>Wraps tensors the caller hands over (they are disposed with this object).</summary>
    public QuantizedMatrix(QuantizationScheme scheme, Tensor codes, Tensor scales, Tensor zeros, Tensor groupIndex)
    {
        Scheme = scheme;
        Codes = codes;
        Scales = scales;
        Zeros = zeros;
        GroupIndex = groupIndex;
    }

    /// <summary>Bits, group size, symmetry.</summary>
    public QuantizationScheme Scheme { get; }
    /// <summary>Codes, int32 [out, in], values 0..2^b − 1.</summary>
    public Tensor Codes { get; }
    /// <summary>Scales s, float32 [out, groups] (for 1-bit: s' = 2 × the sign scale).</summary>
    public Tensor Scales { get; }
    /// <summary>Zero points z, float32 [out, groups]; integers except for 1-bit (0.5).</summary>
    public Tensor Zeros { get; }
    /// <summary>Group of each input column, int32 [in].</summary>
    public Tensor GroupIndex { get; }
    /// <summary>Output rows.</summary>
    public long OutFeatures => Codes.shape[0];
    /// <summary>Input columns.</summary>
    public long InFeatures => Codes.shape[1];

    /// <summary>Ŵ = s · (q − z), float32 [out, in]; the caller disposes it.</summary>
    public Tensor Dequantize()
    {
        using var scope = NewDisposeScope();
        var idx = GroupIndex.to(ScalarType.Int64);
        var result = empty(OutFeatures, InFeatures, ScalarType.Float32);
        // A block of columns at a time: the expanded scales, zero points and codes of a whole Mixtral down_proj would be
        // four more float32 copies of it (235 MB each) beside the result; element by element the values are the same.
        for (long c0 = 0; c0 < InFeatures; c0 += DequantizeColumns)
        {
            using var block = NewDisposeScope();
            long n = Math.Min(DequantizeColumns, InFeatures - c0);
            var columns = idx.narrow(0, c0, n);
            var s = Scales.index_select(1, columns);
            var z = Zeros.index_select(1, columns);
            result.narrow(1, c0, n).copy_(s * (Codes.narrow(1, c0, n).to(ScalarType.Float32) - z));
        }
        return result.MoveToOuterDisposeScope();
    }

    private const long DequantizeColumns = 1024;

    /// <summary>The same matrix as plain arrays (codes, scales, zero points, groups) for the packed layouts.</summary>
    public UnpackedMatrix ToUnpacked()
    {
        using var scope = NewDisposeScope();
        int rows = checked((int)OutFeatures), cols = checked((int)InFeatures), groups = checked((int)Scales.shape[1]);
        return new UnpackedMatrix(Scheme.Bits, rows, cols, groups,
            Codes.to(ScalarType.Int32).contiguous().data<int>().ToArray(),
            Scales.to(ScalarType.Float32).contiguous().data<float>().ToArray(),
            Zeros.to(ScalarType.Float32).contiguous().data<float>().ToArray(),
            GroupIndex.to(ScalarType.Int32).contiguous().data<int>().ToArray());
    }

    /// <summary>A quantized matrix from plain arrays (for example a module read back from a packed checkpoint).</summary>
    public static QuantizedMatrix FromUnpacked(UnpackedMatrix m, QuantizationScheme scheme)
    {
        ArgumentNullException.ThrowIfNull(m);
        if (m.Bits != scheme.Bits)
            throw new ArgumentException($"the matrix has {m.Bits} bits but the scheme says {scheme.Bits}", nameof(scheme));
        return new QuantizedMatrix(scheme,
            tensor(m.Codes, [m.OutFeatures, m.InFeatures]),
            tensor(m.Scales, [m.OutFeatures, m.Groups]),
            tensor(m.Zeros, [m.OutFeatures, m.Groups]),
            tensor(m.GroupIndex, [m.InFeatures]));
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        Codes.Dispose();
        Scales.Dispose();
        Zeros.Dispose();
        GroupIndex.Dispose();
    }
}
