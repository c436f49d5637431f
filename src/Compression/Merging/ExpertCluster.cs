namespace MoECompress.Compression.Merging;

/// <summary>
/// A group of routed experts of one MoE layer that become one output expert.
/// </summary>
/// <param name="Members">Original expert indices, ascending.</param>
/// <param name="Weights">One merge weight per member, summing to 1: the members' calibration selection frequencies
/// normalised within the cluster (uniform when all of them are zero).</param>
/// <param name="Representative">The most frequently selected member (lowest index on ties): its router row is used by
/// the representative rule.</param>
/// <param name="SuperExpert">True when this is a super expert kept alone.</param>
public sealed record ExpertCluster(IReadOnlyList<int> Members, IReadOnlyList<double> Weights, int Representative, bool SuperExpert = false)
{
    /// <summary>True when the cluster holds more than one expert (its weights are new).</summary>
    public bool IsMerged => Members.Count > 1;

    /// <summary>
    /// A cluster over <paramref name="members"/> with weights from <paramref name="frequencies"/> (indexed by expert).
    /// </summary>
    public static ExpertCluster FromFrequencies(IEnumerable<int> members, IReadOnlyList<double> frequencies, bool superExpert = false)
    {
        var m = members.Order().ToArray();
        if (m.Length == 0) throw new ArgumentException("a cluster needs at least one member", nameof(members));
        var f = m.Select(e => Math.Max(0.0, frequencies[e])).ToArray();
        var sum = f.Sum();
        var weights = sum > 0 && double.IsFinite(sum) ? f.Select(x => x / sum).ToArray() : m.Select(_ => 1.0 / m.Length).ToArray();
        var representative = m[0];
        for (var i = 1; i < m.Length; i++)
            if (f[i] > f[Array.IndexOf(m, representative)]) representative = m[i];
        return new ExpertCluster(m, weights, representative, superExpert);
    }
}
