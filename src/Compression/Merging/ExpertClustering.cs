using MoECompress.Formats.Errors;

namespace MoECompress.Compression.Merging;

/// <summary>
/// Groups the routed experts of one MoE layer into the clusters that are merged, under the MoE constraints: super
/// experts stay alone (each its own cluster) unless allowed to merge, and with DeepSeek group-limited routing clusters
/// never cross an expert group and every group gets the same number of clusters (E'/n_group), so that the output keeps
/// n_group equal groups.
/// </summary>
public static class ExpertClustering
{
    /// <summary>
    /// Clusters one layer. Output order (= new expert numbers): group by group, within a group by each cluster's
    /// smallest member.
    /// </summary>
    /// <param name="layer">Layer index (for messages).</param>
    /// <param name="features">One feature vector per expert (mean outputs), all of one length.</param>
    /// <param name="frequencies">Selection frequency per expert (merge weights and representatives).</param>
    /// <param name="outputExperts">E': clusters to form; a multiple of <paramref name="groups"/>.</param>
    /// <param name="keepAlone">Experts that must be a cluster of their own (super experts).</param>
    /// <param name="groups">n_group of group-limited routing (1 = none); must divide the expert count.</param>
    /// <param name="method">The clustering algorithm.</param>
    /// <param name="seed">Seed of k-means.</param>
    /// <param name="maxClusterSize">Hierarchical: the most experts one cluster may hold (raised to the smallest value that
    /// can work, ⌈experts / clusters⌉ within a group); null for no limit. Ignored by k-means.</param>
    /// <exception cref="MoeCompressException">Infeasible: the experts kept alone leave no room for the others.</exception>
    public static IReadOnlyList<ExpertCluster> ClusterLayer(int layer, IReadOnlyList<double[]> features, IReadOnlyList<double> frequencies,
        int outputExperts, IReadOnlySet<int> keepAlone, int groups, ClusteringMethod method, ulong seed, int? maxClusterSize = null)
    {
        ArgumentNullException.ThrowIfNull(features);
        ArgumentNullException.ThrowIfNull(frequencies);
        ArgumentNullException.ThrowIfNull(keepAlone);
        var e = features.Count;
        if (frequencies.Count != e) throw new ArgumentException($"{frequencies.Count} frequencies for {e} experts", nameof(frequencies));
        if (groups < 1 || e % groups != 0) throw new ArgumentException($"{groups} groups do not divide {e} experts", nameof(groups));
        if (outputExperts < 1 || outputExperts > e || outputExperts % groups != 0)
            throw new ArgumentException($"{outputExperts} output experts: must be 1 … {e} and a multiple of {groups} groups", nameof(outputExperts));

        var perGroup = e / groups;
        var clustersPerGroup = outputExperts / groups;
        var result = new List<ExpertCluster>(outputExperts);
        for (var g = 0; g < groups; g++)
        {
            var experts = Enumerable.Range(g * perGroup, perGroup).ToList();
            var alone = experts.Where(keepAlone.Contains).ToList();
            var rest = experts.Where(x => !keepAlone.Contains(x)).ToList();
            var need = clustersPerGroup - alone.Count;
            var where = groups > 1 ? $" in expert group {g} (experts {experts[0]}–{experts[^1]})" : "";
            if (need < 0 || (need == 0 && rest.Count > 0))
                throw new MoeCompressException(ErrorKind.Infeasible,
                    $"layer {layer}: {alone.Count} super expert(s){where} must stay unmerged, which leaves " +
                    $"{Math.Max(0, need)} of the {clustersPerGroup} output expert(s){(groups > 1 ? " per group" : "")} for the other {rest.Count}; " +
                    "keep more experts (--keep/--ratio) or allow merging super experts (--allow-super-experts)");

            var groupClusters = alone.Select(x => ExpertCluster.FromFrequencies([x], frequencies, superExpert: true)).ToList();
            if (rest.Count > 0)
            {
                var points = rest.Select(x => features[x]).ToList();
                var labels = method switch
                {
                    ClusteringMethod.Hierarchical => HierarchicalClustering.Cluster(points, need, maxClusterSize),
                    ClusteringMethod.KMeans => KMeansClustering.Cluster(points, need, seed + (ulong)layer * 1_000_003UL + (ulong)g),
                    _ => throw new ArgumentOutOfRangeException(nameof(method), method, null),
                };
                for (var c = 0; c < need; c++)
                    groupClusters.Add(ExpertCluster.FromFrequencies(rest.Where((_, i) => labels[i] == c), frequencies));
            }
            result.AddRange(groupClusters.OrderBy(c => c.Members[0]));
        }
        return result;
    }
}
