namespace MoECompress.Compression.Merging;

/// <summary>What merging one projection (gate, up or down) of one cluster kept.</summary>
/// <param name="RankKept">Singular directions kept (for <see cref="MergeMethod.Average"/>: the full rank, nothing truncated).</param>
/// <param name="FullRank">min(out, n·in) of the concatenated member weights: the directions available.</param>
/// <param name="EnergyKept">Σσ² of the kept directions / Σσ² of all (1 without truncation).</param>
/// <param name="Whitened">True when the SVD ran on whitened weights (W·L, L Lᵀ = damped Hessian).</param>
public sealed record ProjectionMergeStatistics(int RankKept, int FullRank, double EnergyKept, bool Whitened);
