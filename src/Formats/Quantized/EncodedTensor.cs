using MoECompress.Formats.Safetensors;

namespace MoECompress.Formats.Quantized;

/// <summary>One tensor of a packed module, ready to write: name, dtype, shape and little-endian bytes.</summary>
public sealed record EncodedTensor(string Name, SafetensorsDType DType, long[] Shape, byte[] Data)
{
    /// <summary>The spec a <see cref="CheckpointWriter"/> plans for this tensor.</summary>
    public TensorSpec Spec => new(Name, DType, Shape);
}
