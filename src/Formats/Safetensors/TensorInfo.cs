namespace MoECompress.Formats.Safetensors;

/// <summary>
/// One tensor entry of a safetensors header. <see cref="DataBegin"/> and <see cref="DataEnd"/> are relative to the
/// start of the data section (byte 8 + header length), exactly as stored in the header.
/// </summary>
public sealed record TensorInfo(string Name, SafetensorsDType DType, long[] Shape, long DataBegin, long DataEnd)
{
    public long ByteLength => DataEnd - DataBegin;
    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);
}
