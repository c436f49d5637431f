namespace MoECompress.Formats.Synthetic;

/// <summary>
/// How to scale a synthetic fixture. Unset values take the preset's small defaults (a few layers, hidden 64,
/// intermediate 32–64, vocabulary 256).
/// </summary>
public sealed record SyntheticOptions
{
    /// <summary>Seed of the value generator; the same seed, preset and sizes give byte-identical files.</summary>
    public int Seed { get; init; } = 1;
    /// <summary>Decoder layers (MTP layers come on top where the model has them).</summary>
    public int? Layers { get; init; }
    /// <summary>Routed experts per MoE layer (top-k and DeepSeek groups are adjusted to stay valid).</summary>
    public int? Experts { get; init; }
    /// <summary>Experts chosen per token (default: the preset's, at most <see cref="Experts"/>).</summary>
    public int? TopK { get; init; }
    /// <summary>Hidden size (a multiple of 32, and of the preset's attention head count).</summary>
    public int? Hidden { get; init; }
    /// <summary>Routed-expert intermediate size (e.g. 14336 for Mixtral-8x7B's real per-layer width).</summary>
    public int? Intermediate { get; init; }
    /// <summary>Dense-MLP intermediate size (dense-first layers, e.g. DeepSeek-V2-Lite's 10944).</summary>
    public int? DenseIntermediate { get; init; }
    /// <summary>Attention heads (default: the preset's small count); with <see cref="KvHeads"/> and <see cref="HeadDim"/>
    /// this keeps a real model's head layout at its real hidden size.</summary>
    public int? Heads { get; init; }
    /// <summary>Key/value heads (grouped-query attention).</summary>
    public int? KvHeads { get; init; }
    /// <summary>Size of one attention head (default: hidden / heads, or the preset's).</summary>
    public int? HeadDim { get; init; }
    /// <summary>Largest shard size in bytes; by default about a third of the checkpoint, so there are several shards.</summary>
    public long? ShardBytes { get; init; }
    /// <summary>
    /// Scale hidden and intermediate sizes up (in steps of 32) until the checkpoint reaches at least this many bytes
    /// (IO benchmarks). Takes precedence over <see cref="Hidden"/>.
    /// </summary>
    public long? TargetBytes { get; init; }
    /// <summary>Replace an existing destination folder.</summary>
    public bool Overwrite { get; init; }
}
