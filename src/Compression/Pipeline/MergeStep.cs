using MoECompress.Compression.Calibration;
using MoECompress.Compression.Merging;

namespace MoECompress.Compression.Pipeline;

/// <summary>Merges routed experts into fewer (the <c>merge</c> command; <see cref="Merger"/>).</summary>
public sealed record MergeStep : CompressionStep
{
    /// <inheritdoc />
    public override string Kind => "merge";
    /// <inheritdoc />
    public override bool ChangesExperts => true;

    /// <summary>Fraction of routed experts removed per layer (give this or <see cref="Keep"/>).</summary>
    public double? Ratio { get; init; }
    /// <summary>Experts (clusters) kept per layer.</summary>
    public int? Keep { get; init; }
    /// <summary>average or subspace.</summary>
    public MergeMethod Method { get; init; } = MergeOptions.DefaultMethod;
    /// <summary>hierarchical or kmeans.</summary>
    public ClusteringMethod Clustering { get; init; } = MergeOptions.DefaultClustering;
    /// <summary>subspace: singular directions kept per projection.</summary>
    public int? Rank { get; init; }
    /// <summary>subspace: fraction of Σσ² kept per projection.</summary>
    public double? Energy { get; init; }
    /// <summary>subspace: whiten by the members' input Hessians before truncating.</summary>
    public bool Whiten { get; init; }
    /// <summary>Router rows of merged experts: auto (measured), representative or weighted.</summary>
    public RouterRowChoice RouterRows { get; init; } = RouterRowChoice.Auto;
    /// <summary>Merge super experts like others.</summary>
    public bool AllowSuperExperts { get; init; }
    /// <summary>Permute members' hidden neurons onto the representative's before merging.</summary>
    public bool Align { get; init; } = MergeOptions.DefaultAlign;
    /// <summary>Most experts per cluster (null: balanced; 0: no limit).</summary>
    public int? MaxClusterSize { get; init; }
    /// <summary>Calibration sequences used to measure the router-row choice.</summary>
    public int RouterSamples { get; init; } = MergeOptions.DefaultRouterSamples;
    /// <summary>Seed of k-means++.</summary>
    public int KMeansSeed { get; init; }
    /// <summary>Recipe key <c>propagate</c>: see <see cref="MergeOptions.Propagate"/> (null: compressed where possible).</summary>
    public Quantization.Propagation? Propagate { get; init; }

    /// <summary>The <see cref="MergeOptions"/> of this step on <paramref name="model"/>.</summary>
    public MergeOptions ToOptions(string model, string? output, ProfileRequest profile, bool dryRun = false) => new()
    {
        Model = model, Output = output, Ratio = Ratio, Keep = Keep, Method = Method, Clustering = Clustering, Rank = Rank,
        Energy = Energy, Whiten = Whiten, RouterRows = RouterRows, AllowSuperExperts = AllowSuperExperts, Align = Align,
        MaxClusterSize = MaxClusterSize, RouterSamples = RouterSamples, Seed = KMeansSeed, Propagate = Propagate, Profile = profile, DryRun = dryRun,
    };
}
