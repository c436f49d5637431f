using MoECompress.Tests.Infrastructure;
using MoECompress.Compression.Merging;
using TorchSharp;
using static TorchSharp.torch;

namespace MoECompress.Tests.Merging;

public class ExpertWeightMergeTests
{
    private static List<Tensor> RandomMembers(int n, long rows, long cols, ulong seed)
    {
        var g = new Generator(seed);
        return Enumerable.Range(0, n).Select(_ => randn(new[] { rows, cols }, generator: g)).ToList();
    }

    private static double MaxAbsDiff(Tensor a, Tensor b) => (a - b).abs().max().to(ScalarType.Float64).item<double>();

    [Fact]
    public void Weighted_average_matches_a_hand_computed_case()
    {
        using var scope = NewDisposeScope();
        var a = tensor(new float[] { 1, 2, 3, 4 }, new long[] { 2, 2 });
        var b = tensor(new float[] { 5, 6, 7, 8 }, new long[] { 2, 2 });
        // f = (3, 1) → weights 0.75 / 0.25: 0.75·a + 0.25·b
        var m = ExpertWeightMerge.WeightedAverage([a, b], [3, 1]);
        Assert.Equal(new float[] { 2, 3, 4, 5 }, m.data<float>().ToArray());
        Assert.Equal(ScalarType.Float32, m.dtype);
    }

    [Fact]
    public void All_zero_frequencies_merge_with_uniform_weights()
    {
        using var scope = NewDisposeScope();
        var a = tensor(new float[] { 2, 0 }, new long[] { 1, 2 });
        var b = tensor(new float[] { 0, 4 }, new long[] { 1, 2 });
        Assert.Equal(new float[] { 1, 2 }, ExpertWeightMerge.WeightedAverage([a, b], [0, 0]).data<float>().ToArray());
        var (s, _) = ExpertWeightMerge.Subspace([a, b], [0, 0]);
        Assert.True(MaxAbsDiff(s, tensor(new float[] { 1, 2 }, new long[] { 1, 2 })) < 1e-6);
    }

    [Theory]
    [InlineData(2, 12, 8)]   // out < n·in: every direction of the concatenation is kept
    [InlineData(3, 40, 6)]   // out > n·in: the concatenation has fewer directions than rows
    [InlineData(2, 24, 16)]
    public void Subspace_without_truncation_equals_the_weighted_average(int n, long rows, long cols)
    {
        using var scope = NewDisposeScope();
        var members = RandomMembers(n, rows, cols, 11);
        var f = Enumerable.Range(1, n).Select(i => (double)i * i).ToArray();
        var average = ExpertWeightMerge.WeightedAverage(members, f);
        foreach (var energy in new double?[] { null, 1.0 })
        {
            var (merged, stats) = ExpertWeightMerge.Subspace(members, f, energy: energy);
            Assert.True(MaxAbsDiff(merged, average) < 1e-5, $"max |Δ| = {MaxAbsDiff(merged, average)}");
            Assert.Equal(Math.Min(rows, n * cols), stats.FullRank);
            Assert.Equal(stats.FullRank, stats.RankKept);
            Tolerance.Close(1.0, stats.EnergyKept, Tolerance.Float32);
            Assert.False(stats.Whitened);
        }
    }

    [Fact]
    public void Subspace_whitened_without_truncation_also_equals_the_weighted_average()
    {
        using var scope = NewDisposeScope();
        var members = RandomMembers(2, 16, 10, 5);
        var x = randn(new long[] { 50, 10 }, generator: new Generator(6)) * tensor(Enumerable.Range(1, 10).Select(i => (float)i).ToArray());
        var hessian = x.t().matmul(x); // Σ x xᵀ with very unequal input scales
        var (merged, stats) = ExpertWeightMerge.Subspace(members, [0.2, 0.8], hessian: hessian);
        Assert.True(stats.Whitened);
        Assert.True(MaxAbsDiff(merged, ExpertWeightMerge.WeightedAverage(members, [0.2, 0.8])) < 1e-5);
    }

    [Theory]
    [InlineData(null, 0.8)]
    [InlineData(3, null)]
    public void Whitening_with_an_identity_Hessian_equals_no_whitening(int? rank, double? energy)
    {
        using var scope = NewDisposeScope();
        var members = RandomMembers(3, 20, 12, 21);
        double[] f = [0.5, 0.3, 0.2];
        var (plain, ps) = ExpertWeightMerge.Subspace(members, f, rank, energy);
        var (whitened, ws) = ExpertWeightMerge.Subspace(members, f, rank, energy, hessian: eye(12) * 7f);
        Assert.True(ws.Whitened);
        Assert.Equal(ps.RankKept, ws.RankKept);
        Assert.True(ps.RankKept < ps.FullRank);
        Assert.True(MaxAbsDiff(plain, whitened) < 1e-5, $"max |Δ| = {MaxAbsDiff(plain, whitened)}");
    }

    [Fact]
    public void Energy_keeps_the_fewest_directions_reaching_the_fraction()
    {
        using var scope = NewDisposeScope();
        // One member: the concatenation is the member itself, singular values 4, 2, 1 (energies 16, 4, 1 of 21).
        var w = diag(tensor(new float[] { 4, 2, 1 }));
        var (m1, s1) = ExpertWeightMerge.Subspace([w], [1], energy: 16.0 / 21 - 1e-9);
        Assert.Equal(1, s1.RankKept);
        Tolerance.Close(16.0 / 21, s1.EnergyKept, Tolerance.Float32);
        Assert.True(MaxAbsDiff(m1, diag(tensor(new float[] { 4, 0, 0 }))) < 1e-6);
        var (_, s2) = ExpertWeightMerge.Subspace([w], [1], energy: 0.9);
        Assert.Equal(2, s2.RankKept);
        Tolerance.Close(20.0 / 21, s2.EnergyKept, Tolerance.Float32);
        var (_, s3) = ExpertWeightMerge.Subspace([w], [1], energy: 0.99);
        Assert.Equal(3, s3.RankKept);
    }

    [Fact]
    public void Rank_truncation_gives_a_matrix_of_that_rank_in_the_shared_output_subspace()
    {
        using var scope = NewDisposeScope();
        var members = RandomMembers(2, 10, 6, 3);
        var (merged, stats) = ExpertWeightMerge.Subspace(members, [1, 1], rank: 4);
        Assert.Equal(4, stats.RankKept);
        Assert.Equal(10, stats.FullRank);
        var sigma = linalg.svdvals(merged.to(ScalarType.Float64)).data<double>().ToArray();
        Assert.Equal(4, sigma.Count(v => v > 1e-5 * sigma[0])); // rank 4 up to float32 rounding
        // U_r U_rᵀ (Σ f_i W_i): the weighted average projected on the first r left singular vectors of [W_1 | W_2].
        var (u, _, _) = linalg.svd(cat(members.Select(m => m.to(ScalarType.Float64)).ToList(), 1), fullMatrices: false);
        var ur = u.narrow(1, 0, 4);
        var expected = ur.matmul(ur.t()).matmul(ExpertWeightMerge.WeightedAverage(members, [1, 1]).to(ScalarType.Float64));
        Assert.True(MaxAbsDiff(merged.to(ScalarType.Float64), expected) < 1e-5);
    }

    [Fact]
    public void A_Hessian_without_tokens_leaves_the_merge_unwhitened()
    {
        using var scope = NewDisposeScope();
        var members = RandomMembers(2, 8, 4, 9);
        var (_, stats) = ExpertWeightMerge.Subspace(members, [1, 1], rank: 2, hessian: zeros(4, 4));
        Assert.False(stats.Whitened);
    }

    [Fact]
    public void Bad_arguments_are_rejected()
    {
        using var scope = NewDisposeScope();
        var members = RandomMembers(2, 4, 4, 1);
        Assert.Throws<ArgumentException>(() => ExpertWeightMerge.Subspace(members, [1, 1], rank: 2, energy: 0.5));
        Assert.Throws<ArgumentOutOfRangeException>(() => ExpertWeightMerge.Subspace(members, [1, 1], energy: 1.5));
        Assert.Throws<ArgumentException>(() => ExpertWeightMerge.WeightedAverage(members, [1]));
        Assert.Throws<ArgumentException>(() => ExpertWeightMerge.WeightedAverage([members[0], randn(3, 4)], [1, 1]));
    }
}
