namespace MoECompress.Formats.Safetensors;

/// <summary>What <see cref="CheckpointCopier"/> wrote.</summary>
/// <param name="Destination">Full path of the new checkpoint directory.</param>
/// <param name="TensorCount">Number of tensors.</param>
/// <param name="TensorBytes">Sum of tensor bytes.</param>
/// <param name="Shards">The shard files written.</param>
/// <param name="AuxiliaryFiles">Relative paths of the non-weight files copied.</param>
/// <param name="Elapsed">Wall time of the copy, commit included.</param>
public sealed record CheckpointCopyResult(string Destination, int TensorCount, long TensorBytes,
    IReadOnlyList<PlannedShard> Shards, IReadOnlyList<string> AuxiliaryFiles, TimeSpan Elapsed);
