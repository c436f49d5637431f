using MoECompress.Compression.Merging;
using MoECompress.Formats.Errors;

namespace MoECompress.Tests.Merging;

public class ClusteringTests
{
    private static double[][] Points(params double[][] p) => p;

    [Fact]
    public void Hierarchical_average_linkage_joins_by_mean_pairwise_distance()
    {
        // 1-D points 0, 1, 5, 6.5, 20. Joins: {0,1} (distance 1), then {5,6.5} (1.5) → 3 clusters. The third join compares
        // {0,1}–{5,6.5}: mean of 5, 6.5, 4, 5.5 = 5.25 with {5,6.5}–{20}: mean of 15, 13.5 = 14.25 → {0,1,5,6.5}.
        var points = Points([0], [1], [5], [6.5], [20]);
        Assert.Equal(new[] { 0, 0, 1, 1, 2 }, HierarchicalClustering.Cluster(points, 3));
        Assert.Equal(new[] { 0, 0, 0, 0, 1 }, HierarchicalClustering.Cluster(points, 2));
        Assert.Equal(new[] { 0, 1, 2, 3, 4 }, HierarchicalClustering.Cluster(points, 5));
        Assert.Equal(new[] { 0, 0, 0, 0, 0 }, HierarchicalClustering.Cluster(points, 1));
    }

    [Fact]
    public void Ties_go_to_the_pair_that_comes_first()
    {
        // A chain 0, 2, 4 and a pair 10, 11.6: joins {10,11.6} (1.6), then {0,2} (2, tied with {2,4}). Then
        // for 2 clusters: {0,2}–{4}: mean(4, 2) = 3; {4}–{10,11.6}: mean(6, 7.6) = 6.8 → {0,2,4}.
        var points = Points([0], [2], [4], [10], [11.6]);
        Assert.Equal(new[] { 0, 0, 1, 2, 2 }, HierarchicalClustering.Cluster(points, 3));
        Assert.Equal(new[] { 0, 0, 0, 1, 1 }, HierarchicalClustering.Cluster(points, 2));
    }

    [Fact]
    public void A_cluster_size_limit_balances_the_clusters()
    {
        // Without a limit average linkage grows one cluster {0,1,2,3} (points close together) and keeps 10 and 20 apart.
        var points = Points([0], [1], [2], [3], [10], [20]);
        Assert.Equal(new[] { 0, 0, 0, 0, 1, 2 }, HierarchicalClustering.Cluster(points, 3));
        // At most 2 per cluster: {0,1}, {2,3}, {10,20}.
        Assert.Equal(new[] { 0, 0, 1, 1, 2, 2 }, HierarchicalClustering.Cluster(points, 3, maxSize: 2));
        // A limit below ⌈6/3⌉ is raised to it.
        Assert.Equal(new[] { 0, 0, 1, 1, 2, 2 }, HierarchicalClustering.Cluster(points, 3, maxSize: 1));
        // Sizes 2,2,2,2,2 into 4 clusters with at most 3: no pair fits any more, the limit is relaxed rather than failing.
        var ten = Enumerable.Range(0, 10).Select(i => new double[] { i / 2 * 100 + i % 2 }).ToArray();
        Assert.Equal(4, HierarchicalClustering.Cluster(ten, 4, maxSize: 3).Distinct().Count());
    }

    [Fact]
    public void KMeans_groups_by_direction_and_is_deterministic()
    {
        // Three directions; lengths differ (cosine ignores them).
        var points = Points([1, 0.05, 0], [10, -0.3, 0], [0, 1, 0.1], [0.2, 7, 0], [0, 0, 3], [0.1, 0, 0.5], [5, 0.1, 0.2]);
        var labels = KMeansClustering.Cluster(points, 3, seed: 42);
        Assert.Equal(new[] { 0, 0, 1, 1, 2, 2, 0 }, labels);
        for (var run = 0; run < 3; run++) Assert.Equal(labels, KMeansClustering.Cluster(points, 3, seed: 42));
        foreach (var seed in new ulong[] { 0, 1, 7, 12345 }) Assert.Equal(labels, KMeansClustering.Cluster(points, 3, seed));
    }

    [Fact]
    public void KMeans_same_seed_same_labels_on_random_points()
    {
        var rng = new Random(3);
        var points = Enumerable.Range(0, 32).Select(_ => Enumerable.Range(0, 16).Select(_ => rng.NextDouble() - 0.5).ToArray()).ToArray();
        var a = KMeansClustering.Cluster(points, 9, seed: 5);
        var b = KMeansClustering.Cluster(points, 9, seed: 5);
        Assert.Equal(a, b);
        Assert.Equal(9, a.Distinct().Count());
        Assert.Equal(0, a[0]); // labels numbered by first point
    }

    [Fact]
    public void Cluster_weights_are_normalised_frequencies_and_the_representative_is_the_most_frequent()
    {
        var c = ExpertCluster.FromFrequencies([5, 2, 7], [0, 0, 0.1, 0, 0, 0.3, 0, 0.2]);
        Assert.Equal(new[] { 2, 5, 7 }, c.Members);
        Assert.Equal(0.1 / 0.6, c.Weights[0], 12);
        Assert.Equal(0.5, c.Weights[1], 12);
        Assert.Equal(5, c.Representative);
        var cold = ExpertCluster.FromFrequencies([3, 1], [0, 0, 0, 0]);
        Assert.Equal(new[] { 0.5, 0.5 }, cold.Weights);
        Assert.Equal(1, cold.Representative);
    }

    private static double[][] RandomFeatures(int experts, int dim, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, experts).Select(_ => Enumerable.Range(0, dim).Select(_ => rng.NextDouble()).ToArray()).ToArray();
    }

    [Theory]
    [InlineData(ClusteringMethod.Hierarchical)]
    [InlineData(ClusteringMethod.KMeans)]
    public void Super_experts_stay_alone(ClusteringMethod method)
    {
        var features = RandomFeatures(8, 6, 1);
        // Make super expert 3 identical to expert 4: it would otherwise be merged with it first.
        features[3] = (double[])features[4].Clone();
        var freq = Enumerable.Range(0, 8).Select(i => 1.0 + i).ToArray();
        var clusters = ExpertClustering.ClusterLayer(0, features, freq, 3, new HashSet<int> { 3 }, 1, method, 0);
        Assert.Equal(3, clusters.Count);
        Assert.Contains(clusters, c => c.Members.SequenceEqual([3]) && c.SuperExpert);
        Assert.Equal(Enumerable.Range(0, 8), clusters.SelectMany(c => c.Members).Order());
        Assert.Equal(clusters.OrderBy(c => c.Members[0]), clusters); // output order by smallest member
        var free = ExpertClustering.ClusterLayer(0, features, freq, 3, new HashSet<int>(), 1, method, 0);
        Assert.DoesNotContain(free, c => c.Members.SequenceEqual([3]));
    }

    [Theory]
    [InlineData(ClusteringMethod.Hierarchical)]
    [InlineData(ClusteringMethod.KMeans)]
    public void Clusters_never_cross_groups_and_every_group_gets_the_same_number(ClusteringMethod method)
    {
        var features = RandomFeatures(16, 5, 2);
        // Experts 3 and 4 (groups 0 and 1) identical: without the group rule they would be merged first.
        features[4] = (double[])features[3].Clone();
        var freq = Enumerable.Repeat(1.0, 16).ToArray();
        var clusters = ExpertClustering.ClusterLayer(2, features, freq, 8, new HashSet<int> { 9 }, 4, method, 7);
        Assert.Equal(8, clusters.Count);
        for (var k = 0; k < clusters.Count; k++)
        {
            var groups = clusters[k].Members.Select(m => m / 4).Distinct().ToList();
            Assert.Single(groups);
            Assert.Equal(k / 2, groups[0]); // two clusters per group, listed group by group
        }
        Assert.Contains(clusters, c => c.Members.SequenceEqual([9]));
    }

    [Fact]
    public void Too_many_super_experts_for_the_requested_count_is_infeasible()
    {
        var features = RandomFeatures(8, 4, 3);
        var freq = Enumerable.Repeat(1.0, 8).ToArray();
        var ex = Assert.Throws<MoeCompressException>(() =>
            ExpertClustering.ClusterLayer(5, features, freq, 2, new HashSet<int> { 1, 6 }, 1, ClusteringMethod.Hierarchical, 0));
        Assert.Equal(ErrorKind.Infeasible, ex.Kind);
        Assert.Contains("layer 5", ex.Message);
        Assert.Contains("--allow-super-experts", ex.Message);
        // Groups: both super experts in group 0 of 2 groups with one cluster per group.
        var grouped = Assert.Throws<MoeCompressException>(() =>
            ExpertClustering.ClusterLayer(5, features, freq, 2, new HashSet<int> { 1 }, 2, ClusteringMethod.KMeans, 0));
        Assert.Contains("expert group 0", grouped.Message);
    }
}
