namespace MoECompress.Formats.Safetensors;

/// <summary>One tensor a <see cref="CheckpointWriter"/> will write: its name, element type and shape.</summary>
public sealed record TensorSpec(string Name, SafetensorsDType DType, long[] Shape)
{
    /// <summary>Bytes of data: product of the shape × item size.</summary>
    public long ByteLength => DType.ByteCount(Shape);

    /// <summary>The spec of an existing tensor (same name, dtype and shape).</summary>
    public static TensorSpec From(TensorInfo info) => new(info.Name, info.DType, (long[])info.Shape.Clone());
}
