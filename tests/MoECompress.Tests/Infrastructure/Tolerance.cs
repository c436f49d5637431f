using System.Runtime.CompilerServices;

namespace MoECompress.Tests.Infrastructure;

/// <summary>
/// Floating-point comparisons that hold on every CPU: |actual − expected| ≤ atol + rtol·|expected|. Decimal-place
/// comparisons (<c>Assert.Equal(a, b, 3)</c>) are not used: they round both values, so two results one ulp apart can
/// land on different sides of a rounding boundary, and an absolute number of decimals means a different relative
/// precision for a perplexity of 5,000 than for a probability of 0.5.
/// </summary>
/// <remarks>
/// How the tolerances in the tests are chosen: a float32 result after k dependent operations (a dot product or sum
/// over k terms, a softmax over k logits) carries a relative error of at most about k·ε₃₂ (ε₃₂ = 1.19e-7), typically
/// √k·ε₃₂, and libtorch may sum in a different order on another CPU or thread count. <see cref="Float32"/> (1e-5)
/// covers k up to ~100 with the worst-case bound; sums over a vocabulary or many tokens, or exp() of such a sum
/// (perplexity), get <see cref="Float32Sum"/> (1e-4). Results computed in double from exact inputs get
/// <see cref="Double"/> (1e-9).
/// </remarks>
public static class Tolerance
{
    /// <summary>float32 results of up to ~100 dependent operations.</summary>
    public const double Float32 = 1e-5;

    /// <summary>float32 sums over a vocabulary or many tokens, and exp() of them.</summary>
    public const double Float32Sum = 1e-4;

    /// <summary>Results computed in double.</summary>
    public const double Double = 1e-9;

    /// <summary>Asserts |actual − expected| ≤ atol + rtol·|expected|.</summary>
    public static void Close(double expected, double actual, double rtol, double atol = 0,
        [CallerArgumentExpression(nameof(actual))] string? what = null)
    {
        double allowed = atol + rtol * Math.Abs(expected);
        double diff = Math.Abs(actual - expected);
        Assert.True(diff <= allowed || (double.IsNaN(expected) && double.IsNaN(actual)),
            $"{what}: expected {expected:R}, got {actual:R} (difference {diff:G3}, allowed {allowed:G3} = {atol:G3} + {rtol:G3}·|expected|)");
    }
}
