namespace MoECompress.Compression.Pruning;

/// <summary>The pruning decision of one routed MoE layer.</summary>
public sealed record PrunedLayer
{
    /// <summary>Layer index (MTP layers numbered after the decoder layers).</summary>
    public required int Layer { get; init; }
    /// <summary>True for an MTP layer (no calibration statistics: chosen by a data-free proxy).</summary>
    public bool IsMtp { get; init; }
    /// <summary>What the scores are ("reap", "naee", ..., or "router-row-l2-norm" for MTP layers).</summary>
    public required string ScoreName { get; init; }
    /// <summary>How the kept experts were chosen, in words.</summary>
    public required string Rule { get; init; }
    /// <summary>Kept experts in new order (New = 0..E'−1).</summary>
    public required IReadOnlyList<PrunedExpert> Kept { get; init; }
    /// <summary>Removed experts, by original index.</summary>
    public required IReadOnlyList<PrunedExpert> Removed { get; init; }
    /// <summary>Protected (super) experts of the layer.</summary>
    public IReadOnlyList<int> Protected { get; init; } = [];
    /// <summary>NAEE: Σ‖block output error‖² of the chosen removal over the calibration tokens.</summary>
    public double? OutputError { get; init; }
    /// <summary>Global pruning: experts the global threshold keeps here (k_l); null otherwise.</summary>
    public int? GlobalKeep { get; init; }
    /// <summary>Global pruning: experts kept beyond <see cref="GlobalKeep"/> to equalise the counts.</summary>
    public int ExtraKept { get; init; }
}
