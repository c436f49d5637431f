namespace MoECompress.Formats.Safetensors;

/// <summary>
/// One file listed in a <see cref="CheckpointManifest"/>: relative path, size and SHA-256 (lower-case hex; null for
/// shards written with <see cref="CheckpointWriterOptions.HashShards"/> off).
/// </summary>
public sealed record ManifestFileEntry(string File, long Bytes, string? Sha256)
{
    /// <summary>Number of tensors (shards only; null for other files).</summary>
    public int? TensorCount { get; init; }
}
