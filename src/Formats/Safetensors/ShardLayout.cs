namespace MoECompress.Formats.Safetensors;

/// <summary>
/// An explicit shard for <see cref="CheckpointWriterOptions.Layout"/>: the file name and the tensors it holds, in data
/// order. Used to reproduce an input checkpoint's sharding exactly.
/// </summary>
/// <param name="FileName">File name inside the destination, ending in <c>.safetensors</c>.</param>
/// <param name="TensorNames">Tensors of this shard in the order their data is laid out.</param>
public sealed record ShardLayout(string FileName, IReadOnlyList<string> TensorNames)
{
    /// <summary>
    /// This shard's <c>__metadata__</c>, written verbatim; null means <see cref="CheckpointWriterOptions.Metadata"/>.
    /// </summary>
    public IReadOnlyDictionary<string, string>? Metadata { get; init; }
}
