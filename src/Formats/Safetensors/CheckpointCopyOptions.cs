namespace MoECompress.Formats.Safetensors;

/// <summary>Options of <see cref="CheckpointCopier"/>.</summary>
public sealed record CheckpointCopyOptions
{
    /// <summary>
    /// How the output is written (overwrite, flush, manifest options, ...). Its <see cref="CheckpointWriterOptions.Layout"/>
    /// and <see cref="CheckpointWriterOptions.WriteIndex"/> are replaced when <see cref="KeepShardLayout"/> is on.
    /// </summary>
    public CheckpointWriterOptions Writer { get; init; } = new();

    /// <summary>
    /// Keep the input's shard files exactly: same names, same tensors in each, same data order, same per-shard
    /// metadata, and an index exactly when the input has one. Off: re-shard by
    /// <see cref="CheckpointWriterOptions.MaxShardBytes"/> in the input's tensor order.
    /// </summary>
    public bool KeepShardLayout { get; init; } = true;

    /// <summary>Also copy the non-weight files of the input directory (config, tokenizer, ...).</summary>
    public bool CopyAuxiliaryFiles { get; init; } = true;
}
