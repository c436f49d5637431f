using MoECompress.Formats.Errors;
using MoECompress.Formats.Families;

namespace MoECompress.Compression.Surgery;

/// <summary>
/// The loadability rules of a pruned or merged MoE checkpoint, in one place: one routed expert count E' for every MoE
/// layer with 1 ≤ E' ≤ E and top-k ≤ E'; with DeepSeek group-limited routing (n_group &gt; 1) E' divisible by n_group,
/// topk_group · E'/n_group ≥ top-k, and the same number of experts kept in every group. Every check is arithmetic on
/// the <see cref="MoEConfig"/> (microseconds), so commands call it before any work and fail fast.
/// </summary>
public static class MoEInvariants
{
    /// <summary>
    /// Throws <see cref="MoeCompressException"/> (<see cref="ErrorKind.Infeasible"/>) with a one-line message naming
    /// <paramref name="option"/> when <paramref name="outputExperts"/> experts per layer cannot make a loadable model.
    /// </summary>
    /// <param name="cfg">The input model's MoE facts.</param>
    /// <param name="outputExperts">The requested expert count E' of every MoE layer.</param>
    /// <param name="option">How the user asked for E' (an option name such as <c>--experts</c>), shown in the message.</param>
    public static void CheckOutputCount(MoEConfig cfg, int outputExperts, string option)
    {
        ArgumentNullException.ThrowIfNull(cfg);
        if (Problem(cfg, outputExperts) is { } problem)
            throw new MoeCompressException(ErrorKind.Infeasible, $"{option} = {outputExperts}: {problem}{Hint(cfg)}");
    }

    /// <summary>
    /// With group-limited routing (n_group &gt; 1), checks that <paramref name="keptOriginal"/> (original expert indices
    /// of one layer) keeps the same number of experts in every group (group of expert i = i / (E / n_group)); throws
    /// <see cref="ErrorKind.Infeasible"/> naming the layer and the per-group counts. Does nothing without groups.
    /// </summary>
    /// <exception cref="MoeCompressException"><see cref="ErrorKind.Usage"/> when an index is outside 0..E−1.</exception>
    public static void CheckGroupBalance(MoEConfig cfg, int layer, IReadOnlyList<int> keptOriginal)
    {
        ArgumentNullException.ThrowIfNull(cfg);
        ArgumentNullException.ThrowIfNull(keptOriginal);
        if (cfg.NumGroups <= 1) return;
        var counts = GroupCounts(cfg, layer, keptOriginal);
        if (counts.Distinct().Count() > 1)
            throw new MoeCompressException(ErrorKind.Infeasible,
                $"layer {layer}: group-limited routing (n_group = {cfg.NumGroups}) needs the same number of kept experts in " +
                $"every group, but the groups keep [{string.Join(", ", counts)}] of {cfg.NumExperts / cfg.NumGroups} each");
    }

    /// <summary>Every expert count E' (ascending) for which <see cref="CheckOutputCount"/> passes.</summary>
    public static IReadOnlyList<int> FeasibleCounts(MoEConfig cfg)
    {
        ArgumentNullException.ThrowIfNull(cfg);
        var counts = new List<int>();
        for (int e = 1; e <= cfg.NumExperts; e++)
            if (Problem(cfg, e) is null) counts.Add(e);
        return counts;
    }

    /// <summary>Kept experts per group (index = group), for a layer's kept original expert indices.</summary>
    internal static int[] GroupCounts(MoEConfig cfg, int layer, IReadOnlyList<int> keptOriginal)
    {
        int groups = Math.Max(1, cfg.NumGroups);
        int groupSize = cfg.NumExperts / groups;
        var counts = new int[groups];
        foreach (int e in keptOriginal)
        {
            if (e < 0 || e >= cfg.NumExperts)
                throw new MoeCompressException(ErrorKind.Usage,
                    $"layer {layer}: expert {e} does not exist (the model has experts 0..{cfg.NumExperts - 1})");
            counts[e / groupSize]++;
        }
        return counts;
    }

    /// <summary>What is wrong with E' experts per layer, or null when nothing is.</summary>
    private static string? Problem(MoEConfig cfg, int e)
    {
        if (e < 1) return "at least one routed expert must remain in every MoE layer";
        if (e > cfg.NumExperts) return $"the model has only {cfg.NumExperts} routed experts per layer ({Keys(cfg.ExpertCountKeys)})";
        if (cfg.TopK > e)
            return $"fewer experts than top-k ({Keys(cfg.TopKKeys)} = {cfg.TopK}); every token routes to {cfg.TopK} experts, so keep at least {cfg.TopK}";
        if (cfg.NumGroups > 1)
        {
            if (e % cfg.NumGroups != 0)
                return $"not divisible by n_group = {cfg.NumGroups} (group-limited routing needs the same number of experts in every group)";
            long reachable = (long)cfg.TopKGroups * (e / cfg.NumGroups);
            if (reachable < cfg.TopK)
                return $"topk_group = {cfg.TopKGroups} groups of {e / cfg.NumGroups} experts offer only {reachable} experts, fewer than top-k = {cfg.TopK}";
            // DeepSeek-V3 (noaux_tc) scores each group by the sum of its two best experts: a group needs at least two.
            if (cfg.HasCorrectionBias && e / cfg.NumGroups < 2)
                return $"{e / cfg.NumGroups} expert per group: DeepSeek-V3 routing scores a group by its two best experts, so every group needs at least 2";
        }
        return null;
    }

    private static string Hint(MoEConfig cfg)
    {
        var feasible = FeasibleCounts(cfg);
        return feasible.Count == 0 ? "; no expert count is feasible for this model" : $"; feasible: {Ranges(feasible)}";
    }

    private static string Keys(IReadOnlyList<string> keys) => keys.Count == 0 ? "config" : string.Join("/", keys);

    /// <summary>"2..8" for a run of consecutive counts, "8, 12, 16" otherwise.</summary>
    private static string Ranges(IReadOnlyList<int> values)
    {
        var parts = new List<string>();
        for (int i = 0; i < values.Count; )
        {
            int j = i;
            while (j + 1 < values.Count && values[j + 1] == values[j] + 1) j++;
            parts.Add(j - i >= 2 ? $"{values[i]}..{values[j]}" : j == i ? $"{values[i]}" : $"{values[i]}, {values[j]}");
            i = j + 1;
        }
        return string.Join(", ", parts);
    }
}
