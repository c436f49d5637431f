using static TorchSharp.torch;

namespace MoECompress.Compression.Model;

/// <summary>RMSNorm over the last dimension: w · x / sqrt(mean(x²) + eps), computed in float32. Owns its weight.</summary>
public sealed class RmsNorm : INorm
{
    public RmsNorm(Tensor weight, double eps)
    {
        if (weight.dim() != 1) throw new ArgumentException("RMSNorm weight must be 1-D", nameof(weight));
        Weight = weight;
        Eps = eps;
    }

    public Tensor Weight { get; }
    public double Eps { get; }
    public long Size => Weight.shape[0];

    /// <summary>Normalises x [..., Size].</summary>
    public Tensor Forward(Tensor x) => Apply(x, Weight, Eps);

    /// <summary>Static form: weight · x · rsqrt(mean(x², -1) + eps).</summary>
    public static Tensor Apply(Tensor x, Tensor weight, double eps)
    {
        using var scope = NewDisposeScope();
        var variance = x.Power(2).mean(new long[] { -1 }, keepdim: true);
        var normed = x * variance.Plus(eps).rsqrt();
        return (weight * normed).MoveToOuterDisposeScope();
    }

    public void Dispose() => Weight.Dispose();
}
