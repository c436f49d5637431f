using static TorchSharp.torch;

namespace MoECompress.Compression.Model;

/// <summary>A linear projection y = x·Wᵀ + b with W [out, in] float32 and an optional bias [out]. Owns its tensors.</summary>
public sealed class LinearWeights : IDisposable
{
    public LinearWeights(Tensor weight, Tensor? bias = null)
    {
        if (weight.dim() != 2) throw new ArgumentException("linear weight must be 2-D [out, in]", nameof(weight));
        if (bias is not null && (bias.dim() != 1 || bias.shape[0] != weight.shape[0]))
            throw new ArgumentException("linear bias must be 1-D [out]", nameof(bias));
        Weight = weight;
        Bias = bias;
    }

    public Tensor Weight { get; }
    public Tensor? Bias { get; }
    public long OutFeatures => Weight.shape[0];
    public long InFeatures => Weight.shape[1];

    /// <summary>x [..., in] → [..., out].</summary>
    public Tensor Forward(Tensor x) => nn.functional.linear(x, Weight, Bias);

    public void Dispose()
    {
        Weight.Dispose();
        Bias?.Dispose();
    }
}
