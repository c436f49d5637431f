using MoECompress.Formats.Safetensors;

namespace MoECompress.Formats.Synthetic;

/// <summary>How a synthetic tensor's values are drawn.</summary>
public enum SyntheticInit
{
    /// <summary>N(0, 0.02): weights and biases.</summary>
    Normal,
    /// <summary>1 + N(0, 0.02): norm scales.</summary>
    NormScale,
    /// <summary>Uniform random bytes: MXFP4 blocks (two FP4 codes per byte).</summary>
    RandomBytes,
    /// <summary>MXFP4 E8M0 scales in 119..122, i.e. 2^-8..2^-5, so decoded weights stay small.</summary>
    Mxfp4Scales,
    /// <summary>
    /// FP8 weight: N(0, 1) codes (F8_E4M3), to be multiplied by a <see cref="Fp8BlockScale"/> companion so the
    /// dequantized weight is N(0, 0.02) like every other weight.
    /// </summary>
    Fp8Codes,
    /// <summary>FP8 <c>weight_scale_inv</c> blocks: 0.02 · (1 + N(0, 0.02)).</summary>
    Fp8BlockScale,
}

/// <summary>One tensor of a synthetic checkpoint: name, dtype, shape and how its values are made.</summary>
public sealed record SyntheticTensor(string Name, SafetensorsDType DType, long[] Shape, SyntheticInit Init = SyntheticInit.Normal)
{
    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);
    public long ByteCount => DType.ByteCount(Shape);
}
