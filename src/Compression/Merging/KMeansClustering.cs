namespace MoECompress.Compression.Merging;

/// <summary>
/// Spherical k-means on cosine similarity, as Sub-MoE clusters experts by their outputs: points are scaled to unit
/// length, the distance is 1 − cos, centroids are the normalised means of their members. Seeded with k-means++
/// (each next seed drawn with probability ∝ distance² to the nearest seed) from a fixed seed, restarted
/// <see cref="Restarts"/> times with seeds derived from it, keeping the partition with the smallest total distance.
/// The same inputs and seed always give the same labels.
/// </summary>
public static class KMeansClustering
{
    /// <summary>Seedings tried; the best partition is kept.</summary>
    public const int Restarts = 10;
    /// <summary>Upper bound on the Lloyd iterations of one run (they stop when no assignment changes).</summary>
    public const int MaxIterations = 100;

    /// <summary>
    /// Clusters <paramref name="points"/> into <paramref name="clusters"/> groups. Returns one label per point,
    /// 0 … clusters − 1, numbered in the order of each cluster's smallest point index. A zero vector has distance 1 to
    /// everything.
    /// </summary>
    public static int[] Cluster(IReadOnlyList<double[]> points, int clusters, ulong seed)
    {
        ArgumentNullException.ThrowIfNull(points);
        var n = points.Count;
        if (clusters < 1 || clusters > n)
            throw new ArgumentOutOfRangeException(nameof(clusters), clusters, $"must be between 1 and the number of points {n}");
        var unit = points.Select(Normalize).ToArray();
        if (clusters == n) return Enumerable.Range(0, n).ToArray();

        var rng = new SplitMix64(seed);
        int[]? best = null;
        var bestCost = double.PositiveInfinity;
        for (var r = 0; r < Restarts; r++)
        {
            var (labels, cost) = RunOnce(unit, clusters, new SplitMix64(rng.NextUInt64()));
            if (best is null || cost < bestCost - 1e-12)
            {
                best = labels;
                bestCost = cost;
            }
        }
        return HierarchicalClustering.Relabel(best!);
    }

    /// <summary>1 − cos between two unit (or zero) vectors.</summary>
    public static double CosineDistance(double[] unitA, double[] unitB)
    {
        double dot = 0;
        for (var i = 0; i < unitA.Length; i++) dot += unitA[i] * unitB[i];
        return 1.0 - dot;
    }

    private static (int[] Labels, double Cost) RunOnce(double[][] unit, int k, SplitMix64 rng)
    {
        var n = unit.Length;
        var centers = Seed(unit, k, rng);
        var labels = new int[n];
        Array.Fill(labels, -1);
        for (var iter = 0; iter < MaxIterations; iter++)
        {
            var changed = false;
            for (var i = 0; i < n; i++)
            {
                var nearest = Nearest(unit[i], centers);
                if (nearest != labels[i])
                {
                    labels[i] = nearest;
                    changed = true;
                }
            }
            if (FillEmptyClusters(unit, centers, labels)) changed = true;
            centers = Centroids(unit, labels, k);
            if (!changed) break;
        }
        var cost = 0.0;
        for (var i = 0; i < n; i++) cost += CosineDistance(unit[i], centers[labels[i]]);
        return (labels, cost);
    }

    /// <summary>k-means++: the first seed uniformly, each next one with probability ∝ D², D the distance to the nearest seed.</summary>
    private static double[][] Seed(double[][] unit, int k, SplitMix64 rng)
    {
        var n = unit.Length;
        var chosen = new List<int> { (int)rng.NextInt64(n) };
        var nearest = new double[n];
        for (var i = 0; i < n; i++) nearest[i] = CosineDistance(unit[i], unit[chosen[0]]);
        while (chosen.Count < k)
        {
            var weights = nearest.Select((d, i) => chosen.Contains(i) ? 0 : Math.Max(0, d) * Math.Max(0, d)).ToArray();
            var total = weights.Sum();
            int next;
            if (total <= 0)
                next = Enumerable.Range(0, n).First(i => !chosen.Contains(i)); // every point sits on a seed: take the next unused one
            else
            {
                var u = (rng.NextUInt64() >> 11) * (1.0 / (1UL << 53)) * total;
                next = -1;
                for (var i = 0; i < n; i++)
                {
                    if (weights[i] <= 0) continue;
                    next = i;
                    u -= weights[i];
                    if (u < 0) break;
                }
            }
            chosen.Add(next);
            for (var i = 0; i < n; i++) nearest[i] = Math.Min(nearest[i], CosineDistance(unit[i], unit[next]));
        }
        return chosen.Select(i => (double[])unit[i].Clone()).ToArray();
    }

    private static int Nearest(double[] x, double[][] centers)
    {
        var best = 0;
        var bestD = CosineDistance(x, centers[0]);
        for (var c = 1; c < centers.Length; c++)
        {
            var d = CosineDistance(x, centers[c]);
            if (d < bestD - 1e-15)
            {
                best = c;
                bestD = d;
            }
        }
        return best;
    }

    /// <summary>Gives every empty cluster the point farthest from its own centre among clusters with more than one point.</summary>
    private static bool FillEmptyClusters(double[][] unit, double[][] centers, int[] labels)
    {
        var filled = false;
        var counts = new int[centers.Length];
        foreach (var l in labels) counts[l]++;
        for (var c = 0; c < centers.Length; c++)
        {
            if (counts[c] > 0) continue;
            var far = -1;
            var farD = double.NegativeInfinity;
            for (var i = 0; i < unit.Length; i++)
            {
                if (counts[labels[i]] < 2) continue;
                var d = CosineDistance(unit[i], centers[labels[i]]);
                if (d > farD)
                {
                    far = i;
                    farD = d;
                }
            }
            counts[labels[far]]--;
            labels[far] = c;
            counts[c] = 1;
            filled = true;
        }
        return filled;
    }

    private static double[][] Centroids(double[][] unit, int[] labels, int k)
    {
        var dim = unit[0].Length;
        var centers = Enumerable.Range(0, k).Select(_ => new double[dim]).ToArray();
        for (var i = 0; i < unit.Length; i++)
        {
            var c = centers[labels[i]];
            for (var j = 0; j < dim; j++) c[j] += unit[i][j];
        }
        return centers.Select(Normalize).ToArray();
    }

    private static double[] Normalize(double[] x)
    {
        double s = 0;
        foreach (var v in x) s += v * v;
        var norm = Math.Sqrt(s);
        return norm > 0 && double.IsFinite(norm) ? x.Select(v => v / norm).ToArray() : new double[x.Length];
    }
}
