using MoECompress.Tests.Infrastructure;
using MoECompress.Compression.Model;
using MoECompress.Formats.Families;
using TorchSharp;
using static TorchSharp.torch;

namespace MoECompress.Tests.Model;

public class RouterTests
{
    private static (long[] Experts, double[] Weights) Route(RouterSpec spec, double[] logits, double[]? bias = null, bool[]? kept = null)
    {
        using var scope = NewDisposeScope();
        var z = tensor(logits.Select(v => (float)v).ToArray()).reshape(1, logits.Length);
        var b = bias is null ? null : tensor(bias.Select(v => (float)v).ToArray());
        using var r = MoERouter.Select(z, spec, b, kept);
        return (r.TopKIndices.data<long>().ToArray(), r.TopKWeights.data<float>().ToArray().Select(v => (double)v).ToArray());
    }

    private static double[] Softmax(double[] z)
    {
        var m = z.Max();
        var e = z.Select(v => Math.Exp(v - m)).ToArray();
        var s = e.Sum();
        return e.Select(v => v / s).ToArray();
    }

    private static double Sigmoid(double z) => 1 / (1 + Math.Exp(-z));

    private static readonly double[] Logits = { 1.0, 2.0, 0.5, -1.0 };

    [Fact]
    public void SoftmaxTopKRenormalised()
    {
        // Mixtral: softmax over all, top-2 = experts 1 and 0, weights renormalised: e^2/(e^2+e^1), e^1/(e^2+e^1).
        var spec = new RouterSpec { NumExperts = 4, TopK = 2, Scoring = RouterScoring.Softmax, Normalize = true };
        var (experts, weights) = Route(spec, Logits);
        Assert.Equal(new long[] { 1, 0 }, experts);
        Tolerance.Close(1 / (1 + Math.Exp(-1)), weights[0], Tolerance.Float32, 1e-7);
        Tolerance.Close(1 / (1 + Math.Exp(1)), weights[1], Tolerance.Float32, 1e-7);
    }

    [Fact]
    public void SoftmaxTopKWithoutRenormalisationKeepsProbabilities()
    {
        // OLMoE / Qwen with norm_topk_prob=false: the weights are the full-softmax probabilities.
        var spec = new RouterSpec { NumExperts = 4, TopK = 2, Scoring = RouterScoring.Softmax, Normalize = false };
        var (experts, weights) = Route(spec, Logits);
        var p = Softmax(Logits);
        Assert.Equal(new long[] { 1, 0 }, experts);
        Tolerance.Close(p[1], weights[0], Tolerance.Float32, 1e-7);
        Tolerance.Close(p[0], weights[1], Tolerance.Float32, 1e-7);
    }

    [Fact]
    public void RoutedScalingFactorMultipliesUnnormalisedWeights()
    {
        // DeepSeek-V2: softmax probabilities times routed_scaling_factor (no renormalisation).
        var spec = new RouterSpec { NumExperts = 4, TopK = 2, Scoring = RouterScoring.Softmax, Normalize = false, ScalingFactor = 16 };
        var (_, weights) = Route(spec, Logits);
        var p = Softmax(Logits);
        Tolerance.Close(16 * p[1], weights[0], Tolerance.Float32, 1e-7);
        Tolerance.Close(16 * p[0], weights[1], Tolerance.Float32, 1e-7);
    }

    [Fact]
    public void CorrectionBiasChangesTheChoiceButNotTheWeight()
    {
        // DeepSeek-V3: sigmoid scores [.731, .881, .622, .269] choose experts 1 and 0; a bias of +0.5 on expert 2
        // (biased score 1.122) makes it the best choice, but its weight is its unbiased score .622; weights are
        // normalised then scaled by 2.5.
        var spec = new RouterSpec
        {
            NumExperts = 4, TopK = 2, Scoring = RouterScoring.Sigmoid, UseCorrectionBias = true,
            Normalize = true, NormalizeEpsilon = 1e-20, ScalingFactor = 2.5,
        };
        var withoutBias = Route(spec, Logits, new double[4]);
        Assert.Equal(new long[] { 1, 0 }, withoutBias.Experts);

        var (experts, weights) = Route(spec, Logits, new[] { 0, 0, 0.5, 0 });
        Assert.Equal(new long[] { 2, 1 }, experts);
        double s2 = Sigmoid(0.5), s1 = Sigmoid(2.0);
        Tolerance.Close(2.5 * s2 / (s2 + s1), weights[0], Tolerance.Float32, 1e-7);
        Tolerance.Close(2.5 * s1 / (s2 + s1), weights[1], Tolerance.Float32, 1e-7);
    }

    [Fact]
    public void NoauxGroupScoreIsSumOfTopTwoBiasedScores()
    {
        // 8 experts in 4 groups of 2, keep 1 group, top-2. Group sums of sigmoid scores:
        // g0 = {3.0, -3.0} -> .953+.047 = 1.0; g1 = {1.5, 1.4} -> .818+.802 = 1.62 (best); g2 = {2.5, -4} -> .924+.018;
        // g3 = {0, 0} -> 1.0. Experts 1.5/1.4 win although expert 0 (3.0) and 4 (2.5) have the two best scores.
        var z = new[] { 3.0, -3.0, 1.5, 1.4, 2.5, -4.0, 0.0, 0.0 };
        var spec = new RouterSpec
        {
            NumExperts = 8, TopK = 2, Scoring = RouterScoring.Sigmoid, GroupSelection = RouterGroupSelection.SumOfTopTwoPerGroup,
            NumGroups = 4, TopKGroups = 1, UseCorrectionBias = true, Normalize = false,
        };
        var (experts, weights) = Route(spec, z, new double[8]);
        Assert.Equal(new long[] { 2, 3 }, experts);
        Tolerance.Close(Sigmoid(1.5), weights[0], Tolerance.Float32, 1e-7);
        Tolerance.Close(Sigmoid(1.4), weights[1], Tolerance.Float32, 1e-7);

        // Without group limit the two best scores win.
        var flat = Route(spec with { GroupSelection = RouterGroupSelection.None }, z, new double[8]);
        Assert.Equal(new long[] { 0, 4 }, flat.Experts);
    }

    [Fact]
    public void GroupLimitedGreedyScoresGroupsByTheirBestExpert()
    {
        // DeepSeek-V2 group_limited_greedy: group score = max softmax prob. Groups {3.0,-3.0} (max 3.0) and
        // {2.5, 2.4} (max 2.5): keeping 1 group forces experts 0 and 1 although 2 and 3 have higher sums.
        var z = new[] { 3.0, -3.0, 2.5, 2.4 };
        var spec = new RouterSpec
        {
            NumExperts = 4, TopK = 2, Scoring = RouterScoring.Softmax, GroupSelection = RouterGroupSelection.MaxPerGroup,
            NumGroups = 2, TopKGroups = 1, Normalize = false,
        };
        var (experts, weights) = Route(spec, z);
        var p = Softmax(z);
        Assert.Equal(new long[] { 0, 1 }, experts);
        Tolerance.Close(p[0], weights[0], Tolerance.Float32, 1e-7);
        Tolerance.Close(p[1], weights[1], Tolerance.Float32, 1e-7);

        var sumOfTwo = Route(spec with { GroupSelection = RouterGroupSelection.SumOfTopTwoPerGroup }, z);
        Assert.Equal(new long[] { 2, 3 }, sumOfTwo.Experts);
    }

    [Fact]
    public void PrunedExpertsAreNeverChosenAndSoftmaxIsOverTheRest()
    {
        var spec = new RouterSpec { NumExperts = 4, TopK = 2, Scoring = RouterScoring.Softmax, Normalize = false };
        var (experts, weights) = Route(spec, Logits, kept: new[] { true, false, true, true });
        var p = Softmax(new[] { 1.0, 0.5, -1.0 });
        Assert.Equal(new long[] { 0, 2 }, experts);
        Tolerance.Close(p[0], weights[0], Tolerance.Float32, 1e-7);
        Tolerance.Close(p[1], weights[1], Tolerance.Float32, 1e-7);
    }

    [Fact]
    public void InvalidGroupSettingsAreRejected()
    {
        var spec = new RouterSpec
        {
            NumExperts = 8, TopK = 4, Scoring = RouterScoring.Softmax, GroupSelection = RouterGroupSelection.MaxPerGroup,
            NumGroups = 4, TopKGroups = 1, Normalize = false,
        };
        var ex = Assert.Throws<MoECompress.Formats.Errors.MoeCompressException>(spec.Validate);
        Assert.Contains("topk_group", ex.Message);
    }
}
