namespace MoECompress.Compression.Surgery;

/// <summary>How the router row (and router bias / e_score_correction_bias entry) of an output expert is formed.</summary>
public enum RouterRowRule
{
    /// <summary>Copy the row of <see cref="OutputExpert.Representative"/> (pruning always uses this).</summary>
    Representative,
    /// <summary>Σ_m w_m · row_m over <see cref="OutputExpert.Members"/> with the normalised <see cref="OutputExpert.MemberWeights"/>.</summary>
    Weighted,
}

/// <summary>
/// One expert of a rewritten MoE layer. Pruning keeps an original expert as is (<see cref="Copy"/>); merging builds
/// one expert from several (<see cref="Members"/>) whose weights come from <see cref="ExpertSurgeryPlan.Weights"/>.
/// </summary>
/// <param name="Representative">Original expert index whose weights are copied (when <see cref="Merged"/> is false) and
/// whose router row is used with <see cref="RouterRowRule.Representative"/>.</param>
/// <param name="Members">Original experts this output expert stands for (just the representative when pruning).</param>
/// <param name="MemberWeights">One non-negative weight per member (e.g. calibration frequency); normalised by the user.</param>
/// <param name="RouterRow">How the router row is formed.</param>
/// <param name="Merged">True when the weights are new (ask <see cref="ExpertSurgeryPlan.Weights"/>); false copies the
/// representative's tensors byte for byte.</param>
public sealed record OutputExpert(
    int Representative,
    IReadOnlyList<int> Members,
    IReadOnlyList<double> MemberWeights,
    RouterRowRule RouterRow = RouterRowRule.Representative,
    bool Merged = false)
{
    /// <summary>An original expert kept unchanged.</summary>
    public static OutputExpert Copy(int expert) => new(expert, [expert], [1.0]);
}
