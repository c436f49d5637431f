namespace MoECompress.Formats.Safetensors;

/// <summary>
/// One shard file as a <see cref="CheckpointWriter"/> planned it: name, tensors with their final offsets (data order),
/// metadata and sizes. Printable for a dry run.
/// </summary>
public sealed class PlannedShard
{
    internal PlannedShard(string fileName, IReadOnlyList<TensorInfo> tensors, IReadOnlyDictionary<string, string> metadata,
        byte[] header)
    {
        FileName = fileName;
        Tensors = tensors;
        Metadata = metadata;
        Header = header;
        long data = 0;
        foreach (var t in tensors) data += t.ByteLength;
        TensorBytes = data;
    }

    /// <summary>File name inside the destination directory.</summary>
    public string FileName { get; }

    /// <summary>The tensors in data order with offsets relative to the data section.</summary>
    public IReadOnlyList<TensorInfo> Tensors { get; }

    /// <summary>The shard's <c>__metadata__</c>.</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>The header block: 8-byte length prefix + JSON padded to a multiple of 8.</summary>
    internal byte[] Header { get; }

    /// <summary>File offset of the data section (header block length, a multiple of 8).</summary>
    public long DataSectionOffset => Header.LongLength;

    /// <summary>Sum of the shard's tensor bytes.</summary>
    public long TensorBytes { get; }

    /// <summary>Final file size.</summary>
    public long FileLength => Header.LongLength + TensorBytes;

    /// <inheritdoc />
    public override string ToString() => $"{FileName}: {Tensors.Count} tensors, {FileLength} bytes";
}
