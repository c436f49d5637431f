using TorchSharp;
using static TorchSharp.torch;

namespace MoECompress.Compression.Quantization;

/// <summary>
/// The per-group quantization grid shared by <see cref="RtnQuantizer"/> and <see cref="GptqQuantizer"/> (GPTQ's
/// <c>Quantizer.find_params</c> / <c>quantize</c>, per output row): the range always includes 0
/// (xmin = min(min x, 0), xmax = max(max x, 0)); an all-zero row uses [−1, 1].
/// <list type="bullet">
/// <item>asymmetric: s = (xmax − xmin) / (2^b − 1), z = round(−xmin / s). When that gives z = 0 (no weight below
/// −s/2) the grid is widened to s = xmax / (2^b − 2), z = 1, so every zero point lies in 1..2^b − 1 and fits the GPTQ
/// v1 layout, which stores z − 1 in b bits (GPTQ itself would write z = 0 and overflow the field).</item>
/// <item>symmetric: s = 2·max|x| / (2^b − 1) = max|x| / (2^(b−1) − 0.5), z = 2^(b−1) (GPTQ's convention; the range is
/// mirrored even when a group has no negative weight, where GPTQ would clip half of it).</item>
/// <item>1-bit: sign × m with m = mean |x| over the group; code 1 for x ≥ 0, else 0; stored as s' = 2m, z = 0.5.</item>
/// </list>
/// Codes are clamp(round(x / s) + z, 0, 2^b − 1) with round half to even (torch.round).
/// </summary>
internal static class QuantGrid
{
    /// <summary>Per-row scale and zero point [rows] for the columns <paramref name="x"/> [rows, n] (float32).</summary>
    public static (Tensor Scale, Tensor Zero) FindParams(Tensor x, QuantizationScheme s)
    {
        using var scope = NewDisposeScope();
        Tensor scale, zero;
        if (s.Bits == 1)
        {
            scale = x.abs().mean([1]).Times(2);
            zero = ScalarOps.FullLike(scale, 0.5);
            return (scale.MoveToOuterDisposeScope(), zero.MoveToOuterDisposeScope());
        }
        float maxq = s.MaxCode;
        // Explicit scalars held until the method returns: an implicit float → Scalar temporary can be finalized while
        // libtorch still reads it (seen once as "Unknown scalar type" in a benchmark run).
        using var maxqS = maxq.ToScalar();
        using var maxqMinusOneS = (maxq - 1f).ToScalar();
        using var oneS = 1f.ToScalar();
        using var zeroS = 0f.ToScalar();
        using var halfS = 0.5f.ToScalar();
        using var minusOneS = (-1f).ToScalar();
        using var symmetricS = (2f / maxq).ToScalar();
        using var midS = ((float)(1 << (s.Bits - 1))).ToScalar();
        var xmin = x.amin([1]).clamp_max(zeroS);
        var xmax = x.amax([1]).clamp_min(zeroS);
        if (s.Symmetric)
        {
            var amax = maximum(xmin.neg(), xmax);
            amax = where(amax.eq(zeroS), ones_like(amax), amax);
            scale = amax.mul(symmetricS);
            zero = full_like(scale, midS);
        }
        else
        {
            var both = xmin.eq(zeroS).logical_and(xmax.eq(zeroS));
            xmin = where(both, full_like(xmin, minusOneS), xmin);
            xmax = where(both, ones_like(xmax), xmax);
            scale = (xmax - xmin).div(maxqS);
            zero = (xmin.neg() / scale).round();
            var low = zero.lt(halfS);
            scale = where(low, xmax.div(maxqMinusOneS), scale);
            zero = where(low, ones_like(zero), zero).clamp(oneS, maxqS);
        }
        return (scale.MoveToOuterDisposeScope(), zero.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// Codes (float32, integral) of <paramref name="x"/> ([rows, n] or one column [rows]) on the grid of per-row
    /// <paramref name="scale"/> and <paramref name="zero"/> [rows].
    /// </summary>
    public static Tensor Codes(Tensor x, Tensor scale, Tensor zero, QuantizationScheme s)
    {
        using var scope = NewDisposeScope();
        if (s.Bits == 1) return x.GreaterOrEqual(0).to(ScalarType.Float32).MoveToOuterDisposeScope();
        var sc = x.dim() == 2 ? scale.unsqueeze(1) : scale;
        var z = x.dim() == 2 ? zero.unsqueeze(1) : zero;
        using var zeroS = 0f.ToScalar();
        using var maxS = ((float)s.MaxCode).ToScalar();
        return (x / sc).round().Plus(z).clamp(zeroS, maxS).MoveToOuterDisposeScope();
    }
}
