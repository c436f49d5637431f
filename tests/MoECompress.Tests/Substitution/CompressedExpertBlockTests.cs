using MoECompress.Compression.Model;
using MoECompress.Compression.Substitution;
using MoECompress.Formats.Families;
using MoECompress.Tests.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace MoECompress.Tests.Substitution;

/// <summary>The compressed-experts forward of a MoE block: exact where it must be exact, and the formula on a hand-computed case.</summary>
public sealed class CompressedExpertBlockTests
{
    /// <summary>A block that shares the router and experts of <paramref name="block"/> (dispose only the original).</summary>
    private static MoEBlock Sharing(MoEBlock block, CompressedExpertVectors? vectors, ExpertSkipRule? skip = null) =>
        new(block.Layer, block.Router, block.Experts, block.SharedExpert, block.SharedExpertGate) { CompressedExperts = vectors, SkipRule = skip };

    [Theory]
    [InlineData("mixtral")]
    [InlineData("olmoe")]
    [InlineData("qwen2_moe")]
    [InlineData("deepseek_v3")]
    public void VectorsOfOnesWithNoAuxiliaryExpertReproduceTheBlock(string kind)
    {
        using var model = TinyModel.Create(kind, layers: 2, experts: 8, topK: 3);
        using var layer = model.Engine().LoadLayer(1);
        var block = layer.MoE!;
        using var scope = NewDisposeScope();
        var x = TinyModel.Randn(new Random(5), 1.0, 40, TinyModel.Hidden);
        var expected = block.Forward(x);
        using var vectors = CompressedExpertVectors.Ones(8, TinyModel.Hidden, block.Experts[0].IntermediateSize, aux: 0);
        var actual = Sharing(block, vectors).Forward(x);
        // The same products are accumulated per token in the same expert order: identical, not merely close.
        Assert.True(expected.equal(actual).all().item<bool>(), $"max |Δ| = {(expected - actual).abs().max().item<float>()}");
    }

    [Theory]
    [InlineData("mixtral", 1)]      // renormalised top-k: the computed experts are renormalised among themselves
    [InlineData("olmoe", 1)]        // norm_topk_prob = false: each keeps its own routing weight
    [InlineData("olmoe", 2)]
    [InlineData("deepseek_v2", 1)]  // groups, routed_scaling_factor without renormalisation
    public void VectorsOfOnesReproduceTheModelWithTopKLowered(string kind, int aux)
    {
        const int k = 3;
        using var full = TinyModel.Create(kind, layers: 2, experts: 8, topK: k);
        using var lowered = TinyModel.Create(kind, layers: 2, experts: 8, topK: k - aux);
        using var layer = full.Engine().LoadLayer(1);
        using var reference = lowered.Engine().LoadLayer(1);
        using var scope = NewDisposeScope();
        var x = TinyModel.Randn(new Random(6), 1.0, 40, TinyModel.Hidden);
        using var vectors = CompressedExpertVectors.Ones(8, TinyModel.Hidden, layer.MoE!.Experts[0].IntermediateSize, aux);
        var actual = Sharing(layer.MoE, vectors).Forward(x);
        var expected = reference.MoE!.Forward(x);
        // Renormalising over the computed experts divides once more than the router does: float rounding only.
        Assert.True(actual.allclose(expected, rtol: 1e-5, atol: 1e-6), $"max |Δ| = {(expected - actual).abs().max().item<float>()}");
        Assert.False(actual.allclose(layer.MoE.Forward(x), rtol: 1e-3, atol: 1e-4), "lowering top-k must change the block");
    }

    [Fact]
    public void AuxiliaryVectorsAreAveragedWithRenormalisedWeights()
    {
        // H = 2, I = 2, three experts, top-3, two auxiliary: one main expert, c̄ = (w_b c_b + w_c c_c) / (w_b + w_c).
        using var scope = NewDisposeScope();
        var router = tensor(new float[] { 2f, 0f, 1f, 0f, 0f, 0f }, 3, 2);  // logits for x = (1, 0): 2, 1, 0
        var spec = new RouterSpec { NumExperts = 3, TopK = 3, Scoring = RouterScoring.Softmax, Normalize = false };
        var identity = tensor(new float[] { 1, 0, 0, 1 }, 2, 2);
        var experts = Enumerable.Range(0, 3).Select(e => new GatedMlp(identity.clone() * (e + 1), identity.clone(), identity.clone())).ToList();
        using var block = new MoEBlock(0, new MoERouter(spec, router), experts);
        var c1 = tensor(new float[] { 1, 1, 2, 3, 4, 5 }, 3, 2);
        var c2 = tensor(new float[] { 1, 1, 6, 7, 8, 9 }, 3, 2);
        var c3 = tensor(new float[] { 1, 1, 0.5f, 2, 1.5f, 4 }, 3, 2);
        var x = tensor(new float[] { 1f, 0f }, 1, 2);
        var y = Sharing(block, new CompressedExpertVectors(c1, c2, c3, aux: 2)).Forward(x).data<float>().ToArray();

        // By hand: p = softmax(2, 1, 0); main expert 0 (gate = I, up = I, down = I); aux experts 1 and 2.
        double e0 = Math.Exp(2), e1 = Math.Exp(1), e2 = 1, z = e0 + e1 + e2;
        double p0 = e0 / z, p1 = e1 / z, p2 = e2 / z;
        double w1 = p1 / (p1 + p2), w2 = p2 / (p1 + p2);
        double[] cb1 = [w1 * 2 + w2 * 4, w1 * 3 + w2 * 5], cb2 = [w1 * 6 + w2 * 8, w1 * 7 + w2 * 9], cb3 = [w1 * 0.5 + w2 * 1.5, w1 * 2 + w2 * 4];
        double[] xin = [1, 0];
        var expected = Enumerable.Range(0, 2)
            .Select(j => p0 * Reference.Silu(xin[j] * cb1[j]) * (xin[j] * cb3[j]) * cb2[j]).ToArray();
        Reference.AssertClose(expected, y.Select(v => (double)v).ToArray(), 1e-6, "compressed-expert output");

        // The raw (not renormalised) auxiliary weights would give another answer: the test can tell them apart.
        var raw = p0 * Reference.Silu(p1 * 2 + p2 * 4) * (p1 * 0.5 + p2 * 1.5) * (p1 * 6 + p2 * 8);
        Assert.True(Math.Abs(raw - y[0]) > 1e-2 * Math.Abs(y[0]));
        block.Dispose();
        foreach (var t in new[] { c1, c2, c3 }) t.Dispose();
    }

    [Fact]
    public void SkippingWithMuZeroChangesNothingAndLargeMuIsTopOne()
    {
        using var full = TinyModel.Create("mixtral", layers: 2, experts: 8, topK: 2);
        using var top1 = TinyModel.Create("mixtral", layers: 2, experts: 8, topK: 1);
        using var layer = full.Engine().LoadLayer(0);
        using var reference = top1.Engine().LoadLayer(0);
        using var scope = NewDisposeScope();
        var x = TinyModel.Randn(new Random(8), 1.0, 64, TinyModel.Hidden);
        var never = new ExpertSkipRule(0, mu: 0, normThreshold: double.PositiveInfinity);
        Assert.True(layer.MoE!.Forward(x).equal(Sharing(layer.MoE, null, never).Forward(x)).all().item<bool>());
        Assert.Equal(0, never.SkippedCalls);
        Assert.Equal(128, never.ExpertCalls);

        // w₂/w₁ ≤ 1 < μ: the second expert of every unprotected token is dropped, the first renormalised to weight 1.
        var always = new ExpertSkipRule(0, mu: 2, normThreshold: double.PositiveInfinity);
        var skipped = Sharing(layer.MoE, null, always).Forward(x);
        Assert.True(skipped.allclose(reference.MoE!.Forward(x), rtol: 1e-5, atol: 1e-6));
        Assert.Equal(0.5, always.SkippedFraction);

        // Protection by norm: tokens at or above the threshold keep both experts.
        var norms = x.square().sum(1).sqrt();
        var threshold = norms.median().item<float>();
        var protect = new ExpertSkipRule(0, mu: 2, normThreshold: threshold);
        var mixed = Sharing(layer.MoE, null, protect).Forward(x);
        var isProtected = norms.ge(threshold);
        var expected = where(isProtected.unsqueeze(1), layer.MoE.Forward(x), reference.MoE.Forward(x));
        Assert.True(mixed.allclose(expected, rtol: 1e-5, atol: 1e-6));
        Assert.Equal(isProtected.sum().item<long>(), protect.ProtectedTokens);
        Assert.Equal(64 - protect.ProtectedTokens, protect.SkippedCalls);
    }
}
