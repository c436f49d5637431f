using static TorchSharp.torch;

namespace MoECompress.Compression.Quantization;

/// <summary>
/// Round-to-nearest group quantization of a weight matrix [out, in] (no calibration data): each output row is split
/// into groups of <see cref="QuantizationScheme.GroupSize"/> consecutive input columns (the last one shorter when
/// in % group ≠ 0) and each group gets its own scale and zero point (see <see cref="QuantGrid"/> for the formulas,
/// which are GPTQ's).
/// </summary>
public static class RtnQuantizer
{
    /// <summary>Quantizes <paramref name="w"/> (float [out, in]; not modified) with <paramref name="scheme"/>.</summary>
    /// <exception cref="Formats.Errors.MoeCompressException">Usage: the scheme is not implemented.</exception>
    /// <exception cref="ArgumentException"><paramref name="w"/> is not a 2-D floating-point matrix.</exception>
    public static QuantizedMatrix Quantize(Tensor w, QuantizationScheme scheme)
    {
        ArgumentNullException.ThrowIfNull(w);
        ArgumentNullException.ThrowIfNull(scheme);
        scheme.Validate();
        CheckMatrix(w, nameof(w));
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        long rows = w.shape[0], cols = w.shape[1];
        int g = scheme.EffectiveGroupSize(cols), groups = scheme.Groups(cols);
        var w32 = w.dtype == ScalarType.Float32 ? w.alias() : w.to(ScalarType.Float32);
        var codes = zeros([rows, cols], ScalarType.Float32);
        var scales = empty([rows, groups], ScalarType.Float32);
        var zeroPoints = empty([rows, groups], ScalarType.Float32);
        for (int k = 0; k < groups; k++)
        {
            using var groupScope = NewDisposeScope();
            long c0 = (long)k * g, n = Math.Min(g, cols - c0);
            var x = w32.narrow(1, c0, n);
            var (s, z) = QuantGrid.FindParams(x, scheme);
            codes.narrow(1, c0, n).copy_(QuantGrid.Codes(x, s, z, scheme));
            scales.select(1, k).copy_(s);
            zeroPoints.select(1, k).copy_(z);
        }
        var groupIndex = ScalarOps.Range(cols).FloorOver(g).to(ScalarType.Int32);
        return new QuantizedMatrix(scheme, codes.to(ScalarType.Int32).MoveToOuterDisposeScope(), scales.MoveToOuterDisposeScope(),
            zeroPoints.MoveToOuterDisposeScope(), groupIndex.MoveToOuterDisposeScope());
    }

    internal static void CheckMatrix(Tensor w, string name)
    {
        if (w.dim() != 2)
            throw new ArgumentException($"expected a 2-D weight matrix [out, in], got shape [{string.Join(", ", w.shape)}]", name);
        if (!w.is_floating_point())
            throw new ArgumentException($"expected a floating-point weight matrix, got {w.dtype}", name);
    }
}
