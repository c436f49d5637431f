using static TorchSharp.torch;

namespace MoECompress.Compression.Training;

/// <summary>
/// y = x·Wᵀ with an optional bfloat16 product: inputs and weights are cast to bf16 for the matrix multiply only
/// (CPU has no autocast in TorchSharp); the result returns in fp32 and gradients flow back to the fp32 master weights.
/// </summary>
public static class TrainingLinear
{
    public static Tensor Apply(Tensor x, Tensor weight, bool bf16)
    {
        if (!bf16) return nn.functional.linear(x, weight);
        using var scope = NewDisposeScope();
        var y = nn.functional.linear(x.to(ScalarType.BFloat16), weight.to(ScalarType.BFloat16));
        return y.to(ScalarType.Float32).MoveToOuterDisposeScope();
    }
}
