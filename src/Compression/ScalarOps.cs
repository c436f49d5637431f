using TorchSharp;
using static TorchSharp.torch;

namespace MoECompress.Compression;

/// <summary>
/// Tensor operations with a number operand whose <see cref="Scalar"/> is created explicitly and kept alive until the
/// native call returns. An implicit number → Scalar conversion (<c>t * 2f</c>, <c>t.clamp(-c, c)</c>,
/// <c>arange(n)</c>) makes a temporary that is unreachable once TorchSharp has read its handle: a garbage collection
/// started by another thread during the call can finalize it and free the native Scalar before libtorch reads it
/// (seen as "Unknown scalar type" or "Scalar::toFloat ... Expected false to be true" in long runs). Code of ours uses
/// these helpers or <c>using var s = x.ToScalar();</c>; a test scans the IL of the shipped assemblies for implicit
/// conversions.
/// </summary>
internal static class ScalarOps
{
    /// <summary>Runs <paramref name="op"/> with <paramref name="value"/> as a Scalar that lives until it returns.</summary>
    private static Tensor With(double value, Func<Scalar, Tensor> op)
    {
        using var s = value.ToScalar();
        return op(s);
    }

    // TorchSharp's add(Tensor), add_(Tensor) and the + operator pass an implicit alpha = 1 Scalar, and square() an
    // implicit exponent 2, that nothing holds during the native call: these pass Scalars that live for the process.
    private static readonly Scalar One = 1.ToScalar();
    private static readonly Scalar Two = 2.ToScalar();

    /// <summary>t + other (TorchSharp's <c>+</c> with its alpha held).</summary>
    public static Tensor Plus(this Tensor t, Tensor other) => t.add(other, One);

    /// <summary>t += other in place.</summary>
    public static Tensor Plus_(this Tensor t, Tensor other) => t.add_(other, One);

    /// <summary>t² element-wise (TorchSharp's <c>square()</c>, i.e. pow(t, 2), with its exponent held).</summary>
    public static Tensor Squared(this Tensor t) => t.pow(Two);

    public static Tensor Times(this Tensor t, double value) => With(value, t.mul);

    // add(Scalar) would make its alpha = 1 a Scalar inside TorchSharp that nothing holds during the native call (seen as
    // "Expected false to be true ... toFloat" from add_Scalar): the alpha is explicit and held too.
    // An integer alpha, valid for integer tensors too.
    public static Tensor Plus(this Tensor t, double value)
    {
        using var one = 1.ToScalar();
        return With(value, s => t.add(s, one));
    }

    public static Tensor Over(this Tensor t, double value) => With(value, s => t.div(s));

    /// <summary>t ÷ value rounded down, with an integer Scalar (integer tensors stay integer).</summary>
    public static Tensor FloorOver(this Tensor t, long value)
    {
        using var s = value.ToScalar();
        return t.div(s, rounding_mode: RoundingMode.floor);
    }

    public static Tensor Power(this Tensor t, double exponent) => With(exponent, t.pow);

    public static Tensor ClampTo(this Tensor t, double min, double max)
    {
        using var lo = min.ToScalar();
        using var hi = max.ToScalar();
        return t.clamp(lo, hi);
    }

    public static Tensor AtMost(this Tensor t, double max) => With(max, t.clamp_max);

    public static Tensor AtLeast(this Tensor t, double min) => With(min, t.clamp_min);

    public static Tensor FillWhere(this Tensor t, Tensor mask, double value) => With(value, s => t.masked_fill(mask, s));

    public static Tensor FillWhere_(this Tensor t, Tensor mask, double value) => With(value, s => t.masked_fill_(mask, s));

    public static Tensor EqualTo(this Tensor t, double value) => With(value, t.eq);

    public static Tensor LessThan(this Tensor t, double value) => With(value, t.lt);

    public static Tensor GreaterThan(this Tensor t, double value) => With(value, t.gt);

    public static Tensor NotEqualTo(this Tensor t, double value) => With(value, t.ne);

    public static Tensor Times_(this Tensor t, double value) => With(value, t.mul_);

    /// <summary>t += alpha · other, in place.</summary>
    public static Tensor AddScaled_(this Tensor t, Tensor other, double alpha) => With(alpha, s => t.add_(other, s));

    /// <summary>t[index] += source along <paramref name="dim"/>, in place.</summary>
    public static Tensor IndexAdd_(this Tensor t, long dim, Tensor index, Tensor source)
    {
        using var one = 1.ToScalar();
        return t.index_add_(dim, index, source, one);
    }

    public static Tensor GreaterOrEqual(this Tensor t, double value) => With(value, t.ge);

    public static Tensor FullLike(Tensor t, double value, ScalarType? dtype = null)
    {
        using var s = value.ToScalar();
        return full_like(t, s, dtype);
    }

    /// <summary>start, start + step, … below stop.</summary>
    public static Tensor Range(long start, long stop, long step, ScalarType dtype = ScalarType.Int64, Device? device = null)
    {
        using var a = start.ToScalar();
        using var b = stop.ToScalar();
        using var c = step.ToScalar();
        return arange(a, b, c, dtype, device);
    }

    /// <summary>0, 1, …, n − 1 as int64 (or <paramref name="dtype"/>).</summary>
    public static Tensor Range(long n, ScalarType dtype = ScalarType.Int64, Device? device = null) => Range(0, n, 1, dtype, device);
}
