using MoECompress.Compression.Calibration;

namespace MoECompress.Compression.Merging;

/// <summary>
/// Options of <see cref="Merger.Run"/> (the <c>moe-compress merge</c> command): which model, how many experts to keep
/// per MoE layer, how to cluster and merge them, where the calibration statistics come from and where to write.
/// </summary>
public sealed record MergeOptions
{
    /// <summary>
    /// Default energy fraction kept by <see cref="MergeMethod.Subspace"/> when neither <see cref="Rank"/> nor
    /// <see cref="Energy"/> is given: 1, no truncation. On the bundled demo model (25% and 50% fewer experts) truncating
    /// to 0.95 or 0.9 of the energy, whitened or not, never lowered perplexity or KL below the untruncated merge, and the
    /// merged expert is stored dense either way.
    /// </summary>
    public const double DefaultEnergy = 1.0;
    /// <summary>
    /// Default clustering: hierarchical (balanced, see <see cref="MaxClusterSize"/>). On the demo model with aligned
    /// neurons it gave mean KL 0.221 (25% fewer experts) and 0.814 (50%) against k-means' 0.279 and 0.828.
    /// </summary>
    public const ClusteringMethod DefaultClustering = ClusteringMethod.Hierarchical;
    /// <summary>
    /// Default merge method: the frequency-weighted average, which the subspace merge equals without truncation (the
    /// measured best setting, see <see cref="DefaultEnergy"/>) at a fraction of the cost (no SVD).
    /// </summary>
    public const MergeMethod DefaultMethod = MergeMethod.Average;
    /// <summary>
    /// Default of <see cref="Align"/>: on. On the demo model (experts trained from scratch, neurons in unrelated orders)
    /// alignment cut the mean KL of a 25% merge from 0.52 to 0.22 and of a 50% merge from 1.21 to 1.10 (plain
    /// hierarchical clustering).
    /// </summary>
    public const bool DefaultAlign = true;
    /// <summary>Default number of calibration sequences streamed to choose the router rows.</summary>
    public const int DefaultRouterSamples = 16;

    /// <summary>The input model folder (never modified).</summary>
    public required string Model { get; init; }
    /// <summary>The output folder; required unless <see cref="DryRun"/>.</summary>
    public string? Output { get; init; }
    /// <summary>Fraction of the routed experts to remove per layer, 0 &lt; R &lt; 1 (E' = round(E·(1 − R))); or give <see cref="Keep"/>.</summary>
    public double? Ratio { get; init; }
    /// <summary>Routed experts to keep per layer (E'); or give <see cref="Ratio"/>.</summary>
    public int? Keep { get; init; }
    /// <summary>How clusters are merged.</summary>
    public MergeMethod Method { get; init; } = DefaultMethod;
    /// <summary>
    /// Align every cluster member's intermediate neurons to its representative (a function-preserving permutation,
    /// <see cref="NeuronAlignment"/>) before merging. Default on: see <see cref="DefaultAlign"/>.
    /// </summary>
    public bool Align { get; init; } = DefaultAlign;
    /// <summary>How experts are clustered.</summary>
    public ClusteringMethod Clustering { get; init; } = DefaultClustering;
    /// <summary>
    /// Hierarchical clustering: the most experts one cluster may hold. Null (default): balanced, ⌈E / E'⌉ per cluster
    /// (per routing group with group-limited routing); 0: no limit (HC-SMoE's plain average linkage); n: at most
    /// max(n, ⌈E / E'⌉). Ignored by k-means. On the demo model plain average linkage gathered five of the eight experts
    /// into one cluster at 50% fewer experts (KL 1.10 against 0.81 balanced) and was slightly worse at 25% (0.225
    /// against 0.221).
    /// </summary>
    public int? MaxClusterSize { get; init; }
    /// <summary>Subspace: singular directions kept per projection (exclusive with <see cref="Energy"/>).</summary>
    public int? Rank { get; init; }
    /// <summary>Subspace: energy fraction of Σσ² kept per projection, 0 &lt; e ≤ 1 (null: <see cref="DefaultEnergy"/>; 1 = no truncation).</summary>
    public double? Energy { get; init; }
    /// <summary>Subspace: whiten by the Cholesky factor of the members' summed input Hessian before truncating.</summary>
    public bool Whiten { get; init; }
    /// <summary>Whitening: diagonal damping, a fraction of the Hessian's mean diagonal.</summary>
    public double Damping { get; init; } = 0.01;
    /// <summary>Router rows of merged experts: measured choice per layer, or forced.</summary>
    public RouterRowChoice RouterRows { get; init; } = RouterRowChoice.Auto;
    /// <summary>Calibration sequences (of <see cref="ProfileRequest.SeqLen"/> tokens, drawn from the profile request's data)
    /// streamed to measure the router rows with original propagation. With compressed propagation the rows are measured
    /// inside the sequential pass, on every calibration sequence it streams, so this is not used.</summary>
    public int RouterSamples { get; init; } = DefaultRouterSamples;
    /// <summary>
    /// What feeds layer l+1 while its statistics are collected. <see cref="Quantization.Propagation.Compressed"/>: the merged
    /// layer l's outputs (one sequential pass that clusters, merges and measures each layer before the next; see
    /// <see cref="SequentialMergePass"/>); <see cref="Quantization.Propagation.Original"/>: the original model's (one
    /// calibration pass, then every decision, then the router-row measurement and, for whitening, a Hessian pass). Null
    /// (the default): compressed when the statistics are collected by this run from <see cref="ProfileRequest.Data"/>,
    /// original with a saved profile (it holds the original model's statistics).
    /// </summary>
    public Quantization.Propagation? Propagate { get; init; }
    /// <summary>Continue an interrupted run with compressed propagation from its journal beside the output (finished layers
    /// are not run again; the output is byte-identical to an uninterrupted run's). Without it a leftover journal is an error.</summary>
    public bool Resume { get; init; }
    /// <summary>Where the calibration statistics come from (a saved profile, or a run over calibration data now).</summary>
    public ProfileRequest Profile { get; init; } = new();
    /// <summary>Merge super experts like any other (by default each stays alone, unmerged).</summary>
    public bool AllowSuperExperts { get; init; }
    /// <summary>Seed of k-means.</summary>
    public int Seed { get; init; }
    /// <summary>Replace an existing output folder.</summary>
    public bool Overwrite { get; init; }
    /// <summary>Report the clusters and write nothing. With original propagation no expert weights are read; with compressed
    /// propagation the sequential pass still merges each layer (in memory, subspace merges in a temporary folder) to feed the next.</summary>
    public bool DryRun { get; init; }
    /// <summary>Most tensor bytes per output shard (null: the surgery's default).</summary>
    public long? MaxShardBytes { get; init; }
}
