using MoECompress.Formats.Errors;

namespace MoECompress.Compression.Importance;

/// <summary>
/// NAEE's subset search (Lu et al. 2024, "Not All Experts are Equal"), independent of how the error is measured:
/// among the experts that may be removed (not protected), choose <c>remove</c> of them (with groups, remove/groups from
/// every group) minimising error(removed set). Exhaustive over every admissible subset while their number is at most
/// the limit (ties: the first subset in lexicographic order, groups in order); beyond it greedy: remove one expert at
/// a time — with groups one per group per round, groups in order — each time the one whose removal (together with
/// those already removed) gives the least error (ties: the lower index).
/// </summary>
public static class NaeeSubsetSearch
{
    /// <summary>Number of admissible subsets: Π_g C(candidates in g, remove/groups), saturating at <see cref="long.MaxValue"/>.</summary>
    public static long CountSubsets(int numExperts, int remove, int groups, IReadOnlyCollection<int> protectedExperts)
    {
        var (candidates, perGroup) = Candidates(numExperts, remove, groups, protectedExperts);
        double total = 1;
        foreach (var c in candidates) total *= Binomial(c.Count, perGroup);
        return total >= long.MaxValue ? long.MaxValue : (long)Math.Round(total);
    }

    /// <summary>Runs the search.</summary>
    /// <param name="numExperts">E.</param>
    /// <param name="remove">E − E': experts to remove.</param>
    /// <param name="groups">Expert groups that must lose the same number (1 = none).</param>
    /// <param name="protectedExperts">Experts never removed.</param>
    /// <param name="exhaustiveLimit">Largest subset count searched exhaustively.</param>
    /// <param name="error">Error of removing a set of experts (original indices, ascending). Called once per evaluation.</param>
    /// <param name="cancellationToken">Checked before every evaluation.</param>
    /// <exception cref="MoeCompressException">Infeasible: a group has too few removable experts.</exception>
    public static NaeeSearchResult Search(int numExperts, int remove, int groups, IReadOnlyCollection<int> protectedExperts,
        long exhaustiveLimit, Func<IReadOnlyList<int>, double> error, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(protectedExperts);
        ArgumentNullException.ThrowIfNull(error);
        var (candidates, perGroup) = Candidates(numExperts, remove, groups, protectedExperts);
        var subsets = CountSubsets(numExperts, remove, groups, protectedExperts);
        if (remove == 0) return new NaeeSearchResult([], error([]), true, 1, 1);

        long evaluated = 0;
        double Evaluate(List<int> removed)
        {
            cancellationToken.ThrowIfCancellationRequested();
            evaluated++;
            var sorted = removed.Order().ToArray();
            return error(sorted);
        }

        if (subsets <= exhaustiveLimit)
        {
            int[]? best = null;
            var bestError = double.PositiveInfinity;
            foreach (var removed in CartesianCombinations(candidates, perGroup, 0, new List<int>()))
            {
                var err = Evaluate(removed);
                if (best is null || err < bestError) { bestError = err; best = removed.Order().ToArray(); }
            }
            return new NaeeSearchResult(best!, bestError, true, subsets, evaluated);
        }

        var chosen = new List<int>();
        var chosenError = double.NaN;
        for (var round = 0; round < perGroup; round++)
            foreach (var group in candidates)
            {
                int bestExpert = -1;
                var bestError = double.PositiveInfinity;
                foreach (var c in group)
                {
                    if (chosen.Contains(c)) continue;
                    chosen.Add(c);
                    var err = Evaluate(chosen);
                    chosen.RemoveAt(chosen.Count - 1);
                    if (bestExpert < 0 || err < bestError) { bestError = err; bestExpert = c; }
                }
                chosen.Add(bestExpert);
                chosenError = bestError;
            }
        return new NaeeSearchResult(chosen.Order().ToArray(), chosenError, false, subsets, evaluated);
    }

    private static (List<List<int>> Candidates, int PerGroup) Candidates(int numExperts, int remove, int groups, IReadOnlyCollection<int> protectedExperts)
    {
        groups = Math.Max(1, groups);
        if (numExperts < 1 || remove < 0 || remove >= numExperts)
            throw new ArgumentOutOfRangeException(nameof(remove), remove, $"must be between 0 and {numExperts - 1}");
        if (numExperts % groups != 0 || remove % groups != 0)
            throw new MoeCompressException(ErrorKind.Infeasible,
                $"removing {remove} of {numExperts} experts cannot be split evenly over {groups} expert groups");
        var perGroup = remove / groups;
        var candidates = new List<List<int>>();
        for (var g = 0; g < groups; g++)
        {
            var members = Enumerable.Range(0, numExperts)
                .Where(i => KeptExpertChooser.GroupOf(i, numExperts, groups) == g && !protectedExperts.Contains(i)).ToList();
            if (members.Count < perGroup)
                throw new MoeCompressException(ErrorKind.Infeasible,
                    $"expert group {g} has only {members.Count} removable (unprotected) experts, {perGroup} must go");
            candidates.Add(members);
        }
        return (candidates, perGroup);
    }

    private static IEnumerable<List<int>> CartesianCombinations(List<List<int>> groups, int r, int g, List<int> prefix)
    {
        if (g == groups.Count)
        {
            yield return prefix;
            yield break;
        }
        foreach (var combo in Combinations(groups[g], r))
        {
            var next = new List<int>(prefix);
            next.AddRange(combo);
            foreach (var full in CartesianCombinations(groups, r, g + 1, next)) yield return full;
        }
    }

    /// <summary>Every r-subset of <paramref name="items"/> in lexicographic order of positions.</summary>
    internal static IEnumerable<int[]> Combinations(IReadOnlyList<int> items, int r)
    {
        if (r == 0) { yield return []; yield break; }
        if (r > items.Count) yield break;
        var idx = Enumerable.Range(0, r).ToArray();
        while (true)
        {
            yield return idx.Select(i => items[i]).ToArray();
            var k = r - 1;
            while (k >= 0 && idx[k] == items.Count - r + k) k--;
            if (k < 0) yield break;
            idx[k]++;
            for (var j = k + 1; j < r; j++) idx[j] = idx[j - 1] + 1;
        }
    }

    private static double Binomial(int n, int k)
    {
        if (k < 0 || k > n) return 0;
        k = Math.Min(k, n - k);
        double result = 1;
        for (var i = 1; i <= k; i++) result = result * (n - k + i) / i;
        return Math.Round(result);
    }
}
