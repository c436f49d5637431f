using MoECompress.Compression.Calibration;
using MoECompress.Formats.Errors;

namespace MoECompress.Compression.Importance;

/// <summary>
/// STUN's expert clustering on co-selection (after Lee et al. 2024, "STUN: Structured-Then-Unstructured Pruning for
/// Scalable MoE Pruning"): experts that the router picks for the same tokens behave alike, so one of them can stand in
/// for the others. Exact rule:
/// <list type="number">
/// <item>Similarity s_ij = C_ij / √(n_i·n_j), with C_ij the tokens whose top-k holds both i and j and n_i the tokens that
/// select i (the cosine of the two experts' selection indicator vectors; s_ii = 1).</item>
/// <item>Experts no calibration token selects (n_i = 0) carry no co-selection signal and change no token's output: they
/// are removed first, highest index first, before any clustering (protected experts excepted).</item>
/// <item>The remaining experts start as singleton clusters and are merged agglomeratively with average linkage
/// (similarity of clusters A, B = mean of s_ij over i ∈ A, j ∈ B; updated by the Lance–Williams rule), always merging
/// the most similar pair (ties: the pair whose smallest members come first), never two clusters that both hold a
/// protected expert, until the target number of clusters is reached.</item>
/// <item>Each cluster is represented by its protected member if it has one, else by its most frequent member (largest
/// n_i; ties: the lower index). Pruning keeps the representatives.</item>
/// </list>
/// Because the representative of a merged cluster is the better of the two representatives, the representatives at
/// c clusters are a subset of those at c + 1: the clustering is a removal order, which <see cref="RemovalOrder"/> gives.
/// </summary>
public static class CoselectionClustering
{
    /// <summary>The similarity matrix s [E, E] of a layer (see the class remarks; 0 where an expert is never selected, 1 on the diagonal).</summary>
    public static double[,] Similarity(MoELayerStatistics layer)
    {
        ArgumentNullException.ThrowIfNull(layer);
        var e = layer.NumExperts;
        var s = new double[e, e];
        for (var i = 0; i < e; i++)
            for (var j = 0; j < e; j++)
            {
                if (i == j) { s[i, j] = 1; continue; }
                double ni = layer.SelectionCount[i], nj = layer.SelectionCount[j];
                s[i, j] = ni > 0 && nj > 0 ? layer.CoselectionCount(i, j) / Math.Sqrt(ni * nj) : 0;
            }
        return s;
    }

    /// <summary>
    /// Clusters <paramref name="members"/> (experts of one layer, e.g. one routing group) into <paramref name="clusters"/>
    /// clusters by the rule of the class remarks. Unused experts removed before clustering are returned as singleton
    /// clusters flagged by <paramref name="dropped"/>, not among the result.
    /// </summary>
    /// <param name="layer">The layer's statistics.</param>
    /// <param name="members">Experts to cluster.</param>
    /// <param name="clusters">Target number of clusters (1 ≤ clusters ≤ members).</param>
    /// <param name="protectedExperts">Experts that must stay representatives (at most <paramref name="clusters"/> among the members).</param>
    /// <param name="dropped">Unused experts removed before clustering.</param>
    /// <returns>The clusters, ordered by their smallest member.</returns>
    public static IReadOnlyList<CoselectionCluster> Cluster(MoELayerStatistics layer, IReadOnlyList<int> members, int clusters,
        IReadOnlyCollection<int> protectedExperts, out IReadOnlyList<int> dropped)
    {
        ArgumentNullException.ThrowIfNull(layer);
        ArgumentNullException.ThrowIfNull(members);
        ArgumentNullException.ThrowIfNull(protectedExperts);
        var distinct = members.Distinct().Order().ToArray();
        if (clusters < 1 || clusters > distinct.Length)
            throw new ArgumentOutOfRangeException(nameof(clusters), clusters, $"must be between 1 and the {distinct.Length} members");
        var isProtected = distinct.ToDictionary(m => m, protectedExperts.Contains);
        if (isProtected.Count(kv => kv.Value) > clusters)
            throw new MoeCompressException(ErrorKind.Infeasible,
                $"layer {layer.Layer}: {isProtected.Count(kv => kv.Value)} protected experts cannot be the representatives of {clusters} clusters");

        // Unused experts first: they go before any clustering.
        var toRemove = distinct.Length - clusters;
        var unused = distinct.Where(m => layer.SelectionCount[m] == 0 && !isProtected[m]).OrderByDescending(m => m).Take(toRemove).ToList();
        dropped = unused.Order().ToList();
        var active = distinct.Except(unused).ToArray();
        Agglomerate(layer, active, clusters, isProtected, out var groups);
        return groups.Select(g => new CoselectionCluster(Representative(layer, g, isProtected), g.Order().ToList()))
            .OrderBy(c => c.Members[0]).ToList();
    }

    /// <summary>
    /// Every expert of the layer in the order unconstrained pruning removes them (no protection, no groups): unused
    /// experts first (highest index first), then, while clustering down to one cluster, the representative that loses at
    /// each merge; the last expert is the final representative. Keeping the last E' of this order keeps exactly the
    /// representatives of E' clusters.
    /// </summary>
    public static IReadOnlyList<int> RemovalOrder(MoELayerStatistics layer)
    {
        ArgumentNullException.ThrowIfNull(layer);
        var all = Enumerable.Range(0, layer.NumExperts).ToArray();
        var isProtected = all.ToDictionary(m => m, _ => false);
        var unused = all.Where(m => layer.SelectionCount[m] == 0).OrderByDescending(m => m).ToList();
        var active = all.Except(unused).ToArray();
        var order = new List<int>(unused);
        if (active.Length == 0)
        {
            // Nothing was selected at all: the last unused expert (lowest index) is the "survivor".
            return order;
        }
        var losers = Agglomerate(layer, active, 1, isProtected, out var groups);
        order.AddRange(losers);
        order.Add(Representative(layer, groups[0], isProtected));
        return order;
    }

    /// <summary>Average-linkage merging of <paramref name="active"/> down to <paramref name="target"/> clusters; returns the representative dropped at each merge.</summary>
    private static List<int> Agglomerate(MoELayerStatistics layer, int[] active, int target, IReadOnlyDictionary<int, bool> isProtected,
        out List<List<int>> groups)
    {
        var s = Similarity(layer);
        var n = active.Length;
        var clusters = active.Select(a => new List<int> { a }).ToList();
        groups = clusters;
        var losers = new List<int>();
        if (n <= target) return losers;
        // sim[a, b] between current clusters a, b (indices into groups); alive flags; Lance–Williams average-linkage update.
        var sim = new double[n, n];
        for (var a = 0; a < n; a++)
            for (var b = 0; b < n; b++)
                sim[a, b] = s[active[a], active[b]];
        var alive = Enumerable.Repeat(true, n).ToArray();
        var hasProtected = active.Select(a => isProtected.TryGetValue(a, out var p) && p).ToArray();
        var reps = active.ToArray();
        var clusterCount = n;
        while (clusterCount > target)
        {
            int bestA = -1, bestB = -1;
            var best = double.NegativeInfinity;
            // Clusters keep the position of their first (smallest) member, so index order = order of smallest members.
            for (var a = 0; a < n; a++)
            {
                if (!alive[a]) continue;
                for (var b = a + 1; b < n; b++)
                {
                    if (!alive[b] || hasProtected[a] && hasProtected[b]) continue;
                    if (sim[a, b] > best) { best = sim[a, b]; bestA = a; bestB = b; }
                }
            }
            if (bestA < 0)
                throw new MoeCompressException(ErrorKind.Infeasible,
                    $"layer {layer.Layer}: cannot form {target} clusters without merging two protected experts");
            int sizeA = groups[bestA].Count, sizeB = groups[bestB].Count;
            for (var c = 0; c < n; c++)
            {
                if (!alive[c] || c == bestA || c == bestB) continue;
                var v = (sizeA * sim[bestA, c] + sizeB * sim[bestB, c]) / (sizeA + sizeB);
                sim[bestA, c] = sim[c, bestA] = v;
            }
            var repA = reps[bestA];
            var repB = reps[bestB];
            groups[bestA].AddRange(groups[bestB]);
            hasProtected[bestA] |= hasProtected[bestB];
            alive[bestB] = false;
            var winner = Representative(layer, groups[bestA], isProtected);
            reps[bestA] = winner;
            losers.Add(winner == repA ? repB : repA);
            clusterCount--;
        }
        groups = Enumerable.Range(0, n).Where(i => alive[i]).Select(i => clusters[i]).ToList();
        return losers;
    }

    /// <summary>The protected member, else the most frequent (ties: the lower index).</summary>
    private static int Representative(MoELayerStatistics layer, IReadOnlyList<int> members, IReadOnlyDictionary<int, bool> isProtected) =>
        members.OrderByDescending(m => isProtected.TryGetValue(m, out var p) && p)
            .ThenByDescending(m => layer.SelectionCount[m])
            .ThenBy(m => m)
            .First();
}
