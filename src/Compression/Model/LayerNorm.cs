using static TorchSharp.torch;

namespace MoECompress.Compression.Model;

/// <summary>
/// LayerNorm over the last dimension, as <c>torch.nn.LayerNorm</c> with an affine weight and bias (Phi-3.5-MoE):
/// w · (x − mean(x)) / sqrt(var(x) + eps) + b, with the biased variance, in float32. Owns its tensors.
/// </summary>
public sealed class LayerNorm : INorm
{
    public LayerNorm(Tensor weight, Tensor bias, double eps)
    {
        if (weight.dim() != 1 || bias.dim() != 1 || bias.shape[0] != weight.shape[0])
            throw new ArgumentException("LayerNorm weight and bias must be 1-D of the same size");
        Weight = weight;
        Bias = bias;
        Eps = eps;
    }

    public Tensor Weight { get; }
    public Tensor Bias { get; }
    public double Eps { get; }
    public long Size => Weight.shape[0];

    public Tensor Forward(Tensor x) => nn.functional.layer_norm(x, new[] { Size }, Weight, Bias, Eps);

    public void Dispose()
    {
        Weight.Dispose();
        Bias.Dispose();
    }
}
