namespace MoECompress.Compression.Merging;

/// <summary>How the members of a cluster are merged (the weight arithmetic of <see cref="ExpertWeightMerge"/>).</summary>
public sealed record ExpertMergeSettings
{
    /// <summary>
    /// Reorder every member's intermediate neurons to match the representative's before merging
    /// (<see cref="NeuronAlignment"/>); the reordering does not change a member's function.
    /// </summary>
    public bool Align { get; init; }
    /// <summary>Average or subspace.</summary>
    public MergeMethod Method { get; init; } = MergeMethod.Subspace;
    /// <summary>Subspace: singular directions kept per projection, or null.</summary>
    public int? Rank { get; init; }
    /// <summary>Subspace: energy fraction kept per projection when <see cref="Rank"/> is null (null or 1 = no truncation).</summary>
    public double? Energy { get; init; }
    /// <summary>Subspace: whiten with the members' summed input Hessians (needs a profile with Hessians).</summary>
    public bool Whiten { get; init; }
    /// <summary>Whitening: diagonal damping as a fraction of the Hessian's mean diagonal.</summary>
    public double Damping { get; init; } = 0.01;
}
