using MoECompress.Formats.Errors;

namespace MoECompress.Compression.Importance;

/// <summary>
/// The constraints every pruning decision obeys, in one place: exactly E' experts per layer, protected (super) experts
/// always kept, and with expert groups (DeepSeek group-limited routing; group of expert i = i / (E / groups)) the same
/// number E'/groups kept in every group. Also the plain decision "keep the highest scores" under those constraints.
/// </summary>
public static class KeptExpertChooser
{
    /// <summary>The group of <paramref name="expert"/> among <paramref name="numExperts"/> experts in <paramref name="groups"/> groups.</summary>
    public static int GroupOf(int expert, int numExperts, int groups) => groups <= 1 ? 0 : expert / (numExperts / groups);

    /// <summary>
    /// Throws <see cref="MoeCompressException"/> (Infeasible) naming the layer when <paramref name="keep"/> experts cannot
    /// hold every protected expert (in total or, with groups, within a group), and (Usage) for counts that make no sense.
    /// </summary>
    /// <param name="layer">Shown in the message.</param>
    /// <param name="numExperts">E.</param>
    /// <param name="keep">E'.</param>
    /// <param name="groups">Groups (1 = none).</param>
    /// <param name="protectedExperts">Experts that must be kept.</param>
    public static void CheckFeasible(int layer, int numExperts, int keep, int groups, IReadOnlyCollection<int> protectedExperts)
    {
        ArgumentNullException.ThrowIfNull(protectedExperts);
        groups = Math.Max(1, groups);
        if (keep < 1 || keep > numExperts)
            throw new MoeCompressException(ErrorKind.Usage, $"layer {layer}: cannot keep {keep} of {numExperts} experts");
        if (numExperts % groups != 0 || keep % groups != 0)
            throw new MoeCompressException(ErrorKind.Infeasible,
                $"layer {layer}: {keep} of {numExperts} experts cannot be split evenly over {groups} expert groups");
        foreach (var p in protectedExperts)
            if (p < 0 || p >= numExperts)
                throw new MoeCompressException(ErrorKind.Usage, $"layer {layer}: protected expert {p} does not exist (experts 0..{numExperts - 1})");
        var distinct = protectedExperts.Distinct().Order().ToArray();
        if (distinct.Length > keep)
            throw new MoeCompressException(ErrorKind.Infeasible,
                $"layer {layer}: {distinct.Length} super experts ({string.Join(", ", distinct)}) must be kept but only {keep} experts remain; " +
                "keep more experts or pass --allow-super-experts");
        if (groups > 1)
        {
            var perGroup = keep / groups;
            foreach (var g in distinct.GroupBy(p => GroupOf(p, numExperts, groups)))
                if (g.Count() > perGroup)
                    throw new MoeCompressException(ErrorKind.Infeasible,
                        $"layer {layer}: expert group {g.Key} holds {g.Count()} super experts ({string.Join(", ", g)}) but keeps only " +
                        $"{perGroup} experts (group-limited routing keeps {keep}/{groups} per group); keep more experts or pass --allow-super-experts");
        }
    }

    /// <summary>
    /// Keeps the protected experts, then the highest scores (ties: the lower index), <paramref name="keep"/> in all,
    /// with groups <paramref name="keep"/>/<paramref name="groups"/> per group. Returns the kept indices ascending.
    /// </summary>
    /// <exception cref="MoeCompressException">See <see cref="CheckFeasible"/>.</exception>
    public static int[] TopByScore(int layer, IReadOnlyList<double> scores, int keep, int groups, IReadOnlyCollection<int> protectedExperts)
    {
        ArgumentNullException.ThrowIfNull(scores);
        var e = scores.Count;
        groups = Math.Max(1, groups);
        CheckFeasible(layer, e, keep, groups, protectedExperts);
        var isProtected = new bool[e];
        foreach (var p in protectedExperts) isProtected[p] = true;
        var perGroup = keep / groups;
        var kept = new List<int>(keep);
        for (var g = 0; g < groups; g++)
        {
            var members = Enumerable.Range(0, e).Where(i => GroupOf(i, e, groups) == g);
            kept.AddRange(members
                .OrderByDescending(i => isProtected[i])
                .ThenByDescending(i => scores[i])
                .ThenBy(i => i)
                .Take(perGroup));
        }
        kept.Sort();
        return kept.ToArray();
    }

    /// <summary>Checks a decision against the constraints (count, protected experts, per-group counts); throws Internal when it breaks one.</summary>
    public static void Verify(int layer, int numExperts, IReadOnlyList<int> kept, int keep, int groups, IReadOnlyCollection<int> protectedExperts)
    {
        ArgumentNullException.ThrowIfNull(kept);
        string? problem = null;
        if (kept.Count != keep || kept.Distinct().Count() != keep) problem = $"{kept.Count} experts kept ({kept.Distinct().Count()} distinct), {keep} wanted";
        else if (kept.Any(k => k < 0 || k >= numExperts)) problem = "an expert index is out of range";
        else if (protectedExperts.FirstOrDefault(p => !kept.Contains(p), -1) is var missing && missing >= 0) problem = $"protected expert {missing} was dropped";
        else if (groups > 1 && kept.GroupBy(k => GroupOf(k, numExperts, groups)).Select(g => g.Count()).Distinct().Count() > 1
                 || groups > 1 && kept.Select(k => GroupOf(k, numExperts, groups)).Distinct().Count() != groups)
            problem = "groups keep different numbers of experts";
        if (problem is not null)
            throw new MoeCompressException(ErrorKind.Internal, $"layer {layer}: pruning decision breaks a constraint: {problem}");
    }
}
