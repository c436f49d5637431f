using MoECompress.Tests.Infrastructure;
using MoECompress.Compression.Merging;
using MoECompress.Compression.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace MoECompress.Tests.Merging;

public class NeuronAlignmentTests
{
    [Fact]
    public void Hungarian_finds_the_optimum_of_a_hand_made_case()
    {
        // Greedy takes (0,0)=9 first and ends at 9+1+1 = 11; the optimum is 8+8+8 = 24.
        double[] score =
        [
            9, 8, 0,
            8, 1, 0,
            0, 0, 8,
        ];
        var best = LinearAssignment.Maximize(score, 3);
        Assert.Equal(new[] { 1, 0, 2 }, best);
        Assert.Equal(24, LinearAssignment.Total(score, 3, best));
    }

    [Fact]
    public void A_wide_expert_is_aligned_block_by_block_to_its_hidden_permutation()
    {
        // 2,500 neurons: more than one 2,048-row block of the score and above the exact limit (greedy). The member is the
        // reference with its neurons shuffled plus a little noise: the alignment must find the shuffle.
        const int n = 2500, h = 24;
        using var scope = NewDisposeScope();
        var generator = new Generator(11);
        var g = randn([n, h], generator: generator);
        var u = randn([n, h], generator: generator);
        var d = randn([h, n], generator: generator);
        var shuffle = Enumerable.Range(0, n).ToArray();
        new Random(5).Shuffle(shuffle);
        var index = tensor(shuffle.Select(i => (long)i).ToArray());
        var noise = 0.01;
        var mg = g.index_select(0, index) + noise * randn([n, h], generator: generator);
        var mu = u.index_select(0, index) + noise * randn([n, h], generator: generator);
        var md = d.index_select(1, index) + noise * randn([h, n], generator: generator);
        var pi = NeuronAlignment.Permutation(g, u, d, mg, mu, md);
        // Position a of the reference gets the member neuron that came from a: shuffle[π[a]] = a.
        var correct = Enumerable.Range(0, n).Count(a => shuffle[pi[a]] == a);
        Assert.True(correct >= n * 99 / 100, $"{correct} of {n} neurons aligned");
        Assert.Equal(Enumerable.Range(0, n), pi.Order());
    }

    [Fact]
    public void Hungarian_matches_brute_force_on_random_cases()
    {
        var rng = new Random(8);
        for (var trial = 0; trial < 20; trial++)
        {
            const int n = 6;
            var score = Enumerable.Range(0, n * n).Select(_ => Math.Round(rng.NextDouble() * 10, 1) - 3).ToArray();
            var found = LinearAssignment.Total(score, n, LinearAssignment.Maximize(score, n));
            var best = Permutations(Enumerable.Range(0, n).ToArray()).Max(p => LinearAssignment.Total(score, n, p));
            Tolerance.Close(best, found, Tolerance.Double);
        }
    }

    private static IEnumerable<int[]> Permutations(int[] items)
    {
        if (items.Length <= 1) { yield return items; yield break; }
        for (var i = 0; i < items.Length; i++)
            foreach (var rest in Permutations(items.Where((_, j) => j != i).ToArray()))
                yield return [items[i], .. rest];
    }

    [Fact]
    public void Alignment_recovers_a_shuffled_copy_and_keeps_the_function()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(12);
        var gate = randn(new long[] { 20, 8 }, generator: g);
        var up = randn(new long[] { 20, 8 }, generator: g);
        var down = randn(new long[] { 8, 20 }, generator: g);
        var shuffle = Enumerable.Range(0, 20).OrderBy(i => (i * 7) % 20).ToArray();
        var (sg, su, sd) = NeuronAlignment.Apply(shuffle, gate, up, down);
        // Shuffling neurons does not change the expert's output.
        var x = randn(new long[] { 5, 8 }, generator: g);
        var original = new GatedMlp(gate.alias(), up.alias(), down.alias()).Forward(x);
        Assert.True((new GatedMlp(sg.alias(), su.alias(), sd.alias()).Forward(x) - original).abs().max().item<float>() < 1e-5);
        // Aligning the shuffled copy to the original gives back the original order exactly.
        var pi = NeuronAlignment.Permutation(gate, up, down, sg, su, sd);
        var (ag, au, ad) = NeuronAlignment.Apply(pi, sg, su, sd);
        Assert.True(ag.eq(gate).all().item<bool>() && au.eq(up).all().item<bool>() && ad.eq(down).all().item<bool>());
        // So the aligned average of the two copies is lossless, the unaligned one is not.
        Assert.True(ExpertWeightMerge.WeightedAverage([gate, ag], [1, 1]).eq(gate).all().item<bool>());
        Assert.False(ExpertWeightMerge.WeightedAverage([gate, sg], [1, 1]).allclose(gate, 1e-3, 1e-3));
    }
}
