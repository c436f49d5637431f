namespace MoECompress.Compression.Merging;

/// <summary>
/// Agglomerative clustering with average linkage (UPGMA) on Euclidean distances, as HC-SMoE clusters experts: start with
/// one cluster per point and repeatedly join the two clusters whose mean pairwise point distance is smallest, until the
/// requested number of clusters remains. Deterministic: ties go to the pair that comes first in index order.
/// </summary>
public static class HierarchicalClustering
{
    /// <summary>
    /// Clusters <paramref name="points"/> (all of one length) into <paramref name="clusters"/> groups. Returns one label
    /// per point, 0 … clusters − 1, numbered in the order of each cluster's smallest point index.
    /// </summary>
    /// <param name="points">The points.</param>
    /// <param name="clusters">Clusters to form.</param>
    /// <param name="maxSize">Never join two clusters whose sizes add up to more than this (raised to ⌈n / clusters⌉ when
    /// smaller, so that a partition always exists); null for no limit.</param>
    public static int[] Cluster(IReadOnlyList<double[]> points, int clusters, int? maxSize = null)
    {
        ArgumentNullException.ThrowIfNull(points);
        var n = points.Count;
        if (clusters < 1 || clusters > n)
            throw new ArgumentOutOfRangeException(nameof(clusters), clusters, $"must be between 1 and the number of points {n}");

        // d[i, j]: average-linkage distance between the clusters led by i and j (valid for active i, j).
        var d = new double[n, n];
        for (var i = 0; i < n; i++)
            for (var j = i + 1; j < n; j++)
                d[i, j] = d[j, i] = Euclidean(points[i], points[j]);
        var size = Enumerable.Repeat(1, n).ToArray();
        var active = Enumerable.Repeat(true, n).ToArray();
        var leader = Enumerable.Range(0, n).ToArray(); // point → active cluster index holding it
        var cap = maxSize is { } m ? Math.Max(m, (n + clusters - 1) / clusters) : int.MaxValue;

        for (var remaining = n; remaining > clusters; remaining--)
        {
            var (bi, bj) = ClosestPair(d, active, size, cap);
            if (bi < 0) (bi, bj) = ClosestPair(d, active, size, int.MaxValue); // the size limit leaves no pair: relax it
            // Lance–Williams update for average linkage: d(k, i∪j) = (n_i d(k,i) + n_j d(k,j)) / (n_i + n_j).
            for (var k = 0; k < n; k++)
            {
                if (!active[k] || k == bi || k == bj) continue;
                var v = (size[bi] * d[k, bi] + size[bj] * d[k, bj]) / (size[bi] + size[bj]);
                d[k, bi] = d[bi, k] = v;
            }
            size[bi] += size[bj];
            active[bj] = false;
            for (var p = 0; p < n; p++)
                if (leader[p] == bj) leader[p] = bi;
        }
        return Relabel(leader);
    }

    /// <summary>The active pair (i &lt; j) at the smallest distance whose joint size is within <paramref name="cap"/>; (−1, −1) when none.</summary>
    private static (int, int) ClosestPair(double[,] d, bool[] active, int[] size, int cap)
    {
        int bi = -1, bj = -1;
        var best = double.PositiveInfinity;
        var n = active.Length;
        for (var i = 0; i < n; i++)
        {
            if (!active[i]) continue;
            for (var j = i + 1; j < n; j++)
                if (active[j] && size[i] + size[j] <= cap && (d[i, j] < best || bi < 0))
                {
                    best = d[i, j];
                    bi = i;
                    bj = j;
                }
        }
        return (bi, bj);
    }

    /// <summary>Euclidean distance of two vectors of equal length.</summary>
    public static double Euclidean(double[] a, double[] b)
    {
        if (a.Length != b.Length) throw new ArgumentException("points must have the same length");
        double s = 0;
        for (var i = 0; i < a.Length; i++)
        {
            var t = a[i] - b[i];
            s += t * t;
        }
        return Math.Sqrt(s);
    }

    /// <summary>Renumbers arbitrary cluster ids 0, 1, … in the order of each cluster's first point.</summary>
    internal static int[] Relabel(IReadOnlyList<int> ids)
    {
        var map = new Dictionary<int, int>();
        var labels = new int[ids.Count];
        for (var i = 0; i < ids.Count; i++)
        {
            if (!map.TryGetValue(ids[i], out var l)) map[ids[i]] = l = map.Count;
            labels[i] = l;
        }
        return labels;
    }
}
