using MoECompress.Compression.Surgery;

namespace MoECompress.Compression.Merging;

/// <summary>How one routed layer was merged.</summary>
/// <param name="Layer">Layer index (MTP layers numbered after the decoder layers).</param>
/// <param name="Mtp">True for an MTP layer (no calibration statistics: clustered on router rows with uniform weights).</param>
/// <param name="Features">What the clustering compared: "mean_output", "mean_output_all_tokens" or "router_rows".</param>
/// <param name="Clusters">The output experts in their new order.</param>
/// <param name="RouterRow">The router-row rule used for the merged experts.</param>
/// <param name="RouterRowBasis">Why: "measured", "forced" or a note for layers that were not measured.</param>
/// <param name="RepresentativeError">‖merged block(x) − block(x)‖² / ‖block(x)‖² with representative rows, when measured.</param>
/// <param name="WeightedError">The same with frequency-weighted rows, when measured.</param>
/// <param name="MeasuredTokens">Calibration tokens the errors were measured on.</param>
public sealed record MergeLayerReport(
    int Layer,
    bool Mtp,
    string Features,
    IReadOnlyList<MergeClusterReport> Clusters,
    RouterRowRule RouterRow,
    string RouterRowBasis,
    double? RepresentativeError,
    double? WeightedError,
    long MeasuredTokens);
