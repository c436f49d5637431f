namespace MoECompress.Formats.Gguf;

/// <summary>
/// One tensor of a GGUF file. <see cref="Dimensions"/> is in ggml order (ne[0] = elements of a row, the fastest
/// dimension: a PyTorch [out, in] weight has ne = [in, out]). <see cref="Offset"/> is relative to the data section.
/// </summary>
public sealed record GgufTensorInfo(string Name, long[] Dimensions, GgmlType Type, long Offset)
{
    /// <summary>Longest tensor name llama.cpp accepts (GGML_MAX_NAME − 1).</summary>
    public const int MaxNameLength = 63;

    public long ElementCount => Dimensions.Aggregate(1L, (a, b) => a * b);
    public long RowElements => Dimensions[0];
    public long Rows => ElementCount / RowElements;
    public long ByteLength => Rows * Type.RowBytes(RowElements);

    /// <summary>The PyTorch shape (dimensions reversed).</summary>
    public long[] TorchShape => Dimensions.Reverse().ToArray();
}
