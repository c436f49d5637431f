using MoECompress.Formats.Families;

namespace MoECompress.Compression.Merging;

/// <summary>One output expert of a merged layer.</summary>
/// <param name="OutputExpert">Its new index.</param>
/// <param name="Members">The original experts it stands for.</param>
/// <param name="Weights">Their normalised merge weights (calibration frequencies).</param>
/// <param name="Representative">The most frequently selected member.</param>
/// <param name="SuperExpert">A super expert kept alone.</param>
/// <param name="Projections">What merging kept per projection; null for a single expert (copied) or before the weights were computed.</param>
public sealed record MergeClusterReport(
    int OutputExpert,
    IReadOnlyList<int> Members,
    IReadOnlyList<double> Weights,
    int Representative,
    bool SuperExpert,
    IReadOnlyDictionary<ExpertProjection, ProjectionMergeStatistics>? Projections);
