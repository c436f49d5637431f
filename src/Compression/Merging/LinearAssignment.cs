namespace MoECompress.Compression.Merging;

/// <summary>
/// The linear assignment problem on a square score matrix: a permutation π maximising Σ_i score[i, π(i)]. Solved exactly
/// with the Hungarian algorithm (shortest augmenting paths with potentials, O(n³)) up to <see cref="ExactLimit"/> rows,
/// greedily above (rows in order of their best score take their best free column, O(n²)): an exact solve of
/// n = 14,336 (Mixtral's expert width) would take hours.
/// </summary>
public static class LinearAssignment
{
    /// <summary>Largest n solved exactly.</summary>
    public const int ExactLimit = 1024;

    /// <summary>
    /// The assignment of <paramref name="score"/> (row-major n × n): result[i] is the column given to row i.
    /// </summary>
    public static int[] Maximize(ReadOnlySpan<double> score, int n)
    {
        if (n < 0 || score.Length != (long)n * n) throw new ArgumentException($"score must hold {n}x{n} values");
        foreach (var v in score)
            if (!double.IsFinite(v)) throw new ArgumentException("scores must be finite", nameof(score));
        return n <= ExactLimit ? Hungarian(score, n) : Greedy(score, n);
    }

    /// <summary>Total score of an assignment.</summary>
    public static double Total(double[] score, int n, IReadOnlyList<int> assignment)
    {
        double s = 0;
        for (var i = 0; i < n; i++) s += score[(long)i * n + assignment[i]];
        return s;
    }

    /// <summary>Exact: minimises Σ cost with cost = −score (1-based arrays; row 0 and column 0 are sentinels).</summary>
    private static int[] Hungarian(ReadOnlySpan<double> score, int n)
    {
        var u = new double[n + 1];
        var v = new double[n + 1];
        var p = new int[n + 1];   // p[j]: row matched to column j
        var way = new int[n + 1];
        var minv = new double[n + 1];
        var used = new bool[n + 1];
        for (var i = 1; i <= n; i++)
        {
            p[0] = i;
            var j0 = 0;
            Array.Fill(minv, double.PositiveInfinity);
            Array.Fill(used, false);
            do
            {
                used[j0] = true;
                int i0 = p[j0], j1 = 0;
                var delta = double.PositiveInfinity;
                var row = (i0 - 1) * n;
                for (var j = 1; j <= n; j++)
                {
                    if (used[j]) continue;
                    var cur = -score[row + j - 1] - u[i0] - v[j];
                    if (cur < minv[j])
                    {
                        minv[j] = cur;
                        way[j] = j0;
                    }
                    if (minv[j] < delta)
                    {
                        delta = minv[j];
                        j1 = j;
                    }
                }
                for (var j = 0; j <= n; j++)
                {
                    if (used[j])
                    {
                        u[p[j]] += delta;
                        v[j] -= delta;
                    }
                    else minv[j] -= delta;
                }
                j0 = j1;
            } while (p[j0] != 0);
            do
            {
                var j1 = way[j0];
                p[j0] = p[j1];
                j0 = j1;
            } while (j0 != 0);
        }
        var result = new int[n];
        for (var j = 1; j <= n; j++) result[p[j] - 1] = j - 1;
        return result;
    }

    private static int[] Greedy(ReadOnlySpan<double> score, int n)
    {
        var order = new (double Best, int Row)[n];
        for (var i = 0; i < n; i++)
        {
            var best = double.NegativeInfinity;
            for (var j = 0; j < n; j++) best = Math.Max(best, score[i * n + j]);
            order[i] = (best, i);
        }
        Array.Sort(order, (a, b) => b.Best != a.Best ? b.Best.CompareTo(a.Best) : a.Row.CompareTo(b.Row));
        var taken = new bool[n];
        var result = new int[n];
        foreach (var (_, i) in order)
        {
            var bestJ = -1;
            var bestS = double.NegativeInfinity;
            for (var j = 0; j < n; j++)
                if (!taken[j] && (bestJ < 0 || score[i * n + j] > bestS))
                {
                    bestJ = j;
                    bestS = score[i * n + j];
                }
            taken[bestJ] = true;
            result[i] = bestJ;
        }
        return result;
    }
}
