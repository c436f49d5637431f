using MoECompress.Compression.Model;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Families;
using static TorchSharp.torch;

namespace MoECompress.Tests.Model;

/// <summary>
/// Phi-3.5-MoE forward pass against a hand-written double-precision reference of transformers' PhimoeForCausalLM:
/// LayerNorm (weight and bias) before attention, before the experts and at the end; q/k/v/o biases; sliding window;
/// LongRoPE with Phi's short/long mscale on cos and sin; sparsemixer routing in eval mode (two rounds of "best
/// remaining logit, weighted by its probability in a softmax over the logits within the relative jitter band"); the
/// lm_head bias.
/// </summary>
public sealed class PhiMoeForwardTests
{
    [Theory]
    [InlineData(7)]   // within original_max_position_embeddings (8): short factors and short_mscale
    [InlineData(11)]  // beyond it: long factors and long_mscale
    public void LogitsMatchTheHandWrittenReference(int length)
    {
        using var model = TinyModel.Create("phimoe", layers: 3, experts: 8, topK: 2);
        var engine = model.Engine();
        Assert.True(engine.Config.UseLayerNorm);
        Assert.Equal(0.3, engine.Config.Router.SparseMixerJitterEps);
        var tokens = TinyModel.Tokens(91 + length, length);
        var weights = new List<float>();
        var observer = new DelegateObserver(onMoEBlock: a => weights.AddRange(a.Routing.TopKWeights.data<float>().ToArray()));
        using var resident = engine.LoadResident();
        using var scope = NewDisposeScope();
        var actual = Reference.Matrix(resident.Forward(tokens, observer));
        Reference.AssertRelativelyClose(ReferenceLogits(model, tokens), actual, 1e-5);
        // The band is wide enough that some first-round weights are well below one: the masked softmax is exercised.
        Assert.Contains(weights, w => w < 0.9f);
    }

    [Theory]
    // Logits 2.0 and 1.9 are 5% apart relative to 2.0: inside the band of jitter 0.05 (10%), outside that of 0.01.
    [InlineData(new[] { 2.0, 1.9, -1.0, 0.5 }, 0.05, new[] { 0, 1 })]
    [InlineData(new[] { 2.0, 1.9, -1.0, 0.5 }, 0.01, new[] { 0, 1 })]
    // All logits negative: the band is relative to |z| (max(|z|, m) with m < 0).
    [InlineData(new[] { -1.0, -1.05, -3.0, -2.0 }, 0.05, new[] { 0, 1 })]
    [InlineData(new[] { 0.3, -0.2, 0.25, 0.1, 0.28 }, 0.2, new[] { 0, 4 })]
    public void SparseMixerWeighsEachChoiceByItsMaskedSoftmax(double[] logits, double jitter, int[] expected)
    {
        var spec = new RouterSpec { NumExperts = logits.Length, TopK = 2, Scoring = RouterScoring.Softmax, Normalize = false, SparseMixerJitterEps = jitter };
        using var scope = NewDisposeScope();
        using var routing = MoERouter.Select(tensor(logits.Select(v => (float)v).ToArray()).unsqueeze(0), spec);
        var (experts, weights) = SparseMixer(logits, jitter, null);
        Assert.Equal(expected, experts);
        Assert.Equal(expected.Select(e => (long)e), routing.TopKIndices.data<long>().ToArray());
        Reference.AssertClose(weights, Reference.Vector(routing.TopKWeights), 1e-6, "weights");
        Reference.AssertClose(Reference.Softmax(logits), Reference.Vector(routing.Scores), 1e-6, "scores");
        if (jitter == 0.05 && logits[0] == 2.0)
            Assert.Equal(1 / (1 + Math.Exp(-0.1)), weights[0], 6);   // softmax over {2.0, 1.9}
        if (jitter == 0.01)
            Assert.Equal(new[] { 1.0, 1.0 }, weights);                // only the chosen logit survives each round
    }

    [Fact]
    public void SparseMixerNeverChoosesADroppedExpert()
    {
        double[] logits = [2.0, 1.9, 1.85, 0.5];
        var spec = new RouterSpec { NumExperts = 4, TopK = 2, Scoring = RouterScoring.Softmax, Normalize = false, SparseMixerJitterEps = 0.05 };
        bool[] kept = [false, true, true, true];
        using var scope = NewDisposeScope();
        using var routing = MoERouter.Select(tensor(logits.Select(v => (float)v).ToArray()).unsqueeze(0), spec, keptExperts: kept);
        var (experts, weights) = SparseMixer(logits, 0.05, kept);
        Assert.Equal(new[] { 1, 2 }, experts);
        Assert.Equal(new long[] { 1, 2 }, routing.TopKIndices.data<long>().ToArray());
        Reference.AssertClose(weights, Reference.Vector(routing.TopKWeights), 1e-6, "weights");
    }

    [Fact]
    public void LongRopeTakesTheOriginalContextFromTheTopLevelWhenRopeScalingLacksIt()
    {
        using var model = TinyModel.Create("phimoe", configure: c => c["rope_scaling"]!.AsObject().Remove("original_max_position_embeddings"));
        var engine = model.Engine();
        Assert.Equal(8, engine.Config.RopeScaling.OriginalMaxPositionEmbeddings);
        Assert.Equal(1.1, engine.Rotary.AttentionFactorFor(8));
        Assert.Equal(1.3, engine.Rotary.AttentionFactorFor(9));
    }

    [Fact]
    public void TopKOtherThanTwoIsRefused()
    {
        using var model = TinyModel.Create("phimoe", topK: 1);
        var ex = Assert.Throws<MoeCompressException>(() => model.Engine());
        Assert.Equal(ErrorKind.InvalidConfig, ex.Kind);
        Assert.Contains("num_experts_per_tok", ex.Message);
        Assert.Contains("sparsemixer", ex.Message);
    }

    [Fact]
    public void AMissingNormBiasIsNamed()
    {
        using var model = TinyModel.Create("phimoe", layers: 2);
        model.Source.Remove("model.layers.1.post_attention_layernorm.bias");
        var ex = Assert.Throws<MoeCompressException>(() => model.Engine().LoadLayer(1).Dispose());
        Assert.Equal(ErrorKind.InvalidCheckpoint, ex.Kind);
        Assert.Contains("model.layers.1.post_attention_layernorm.bias", ex.Message);
    }

    /// <summary>
    /// Sparsemixer in plain doubles: per round m = the best logit not chosen (nor dropped); the logits kept are those not
    /// chosen with (m − z) / max(|z|, m) ≤ 2·jitter; the weight is m's share of their softmax.
    /// </summary>
    internal static (int[] Experts, double[] Weights) SparseMixer(double[] z, double jitter, bool[]? kept)
    {
        var chosen = new List<int>();
        var weights = new List<double>();
        for (int round = 0; round < 2; round++)
        {
            var candidates = Enumerable.Range(0, z.Length).Where(e => !chosen.Contains(e) && (kept is null || kept[e])).ToArray();
            int best = candidates.OrderByDescending(e => z[e]).First();
            double m = z[best];
            var inBand = candidates.Where(e => (m - z[e]) / Math.Max(Math.Abs(z[e]), m) <= 2 * jitter).ToArray();
            double max = inBand.Max(e => z[e]);
            double sum = inBand.Sum(e => Math.Exp(z[e] - max));
            chosen.Add(best);
            weights.Add(Math.Exp(m - max) / sum);
        }
        return (chosen.ToArray(), weights.ToArray());
    }

    internal static double[] LayerNorm(double[] x, double[] w, double[] b, double eps)
    {
        double mean = x.Average();
        double variance = x.Select(v => (v - mean) * (v - mean)).Average();
        double r = 1 / Math.Sqrt(variance + eps);
        return x.Select((v, i) => w[i] * (v - mean) * r + b[i]).ToArray();
    }

    /// <summary>Logits [L, V] of the Phi-3.5-MoE model in <paramref name="model"/>'s tensors, computed without the engine.</summary>
    private static double[,] ReferenceLogits(TinyModel model, int[] tokens)
    {
        var src = model.Source;
        var c = model.Config;
        double eps = c["rms_norm_eps"]!.GetValue<double>(), jitter = c["router_jitter_noise"]!.GetValue<double>();
        int heads = c["num_attention_heads"]!.GetValue<int>(), kvHeads = c["num_key_value_heads"]!.GetValue<int>();
        int headDim = TinyModel.Hidden / heads;
        var rope = c["rope_scaling"]!;
        bool isLong = tokens.Length > rope["original_max_position_embeddings"]!.GetValue<int>();
        var factors = rope[isLong ? "long_factor" : "short_factor"]!.AsArray().Select(n => n!.GetValue<double>()).ToArray();
        double mscale = rope[isLong ? "long_mscale" : "short_mscale"]!.GetValue<double>();
        var frequencies = ReferenceAttention.DefaultFrequencies(headDim, c["rope_theta"]!.GetValue<double>()).Select((f, i) => f / factors[i]).ToArray();
        double[,] M(string n) => Reference.Matrix(src.Get(n));
        double[] Vec(string n) => Reference.Vector(src.Get(n));

        var embed = M("model.embed_tokens.weight");
        var x = tokens.Select(t => Reference.Row(embed, t)).ToArray();
        for (int l = 0; l < model.MoE.NumLayers; l++)
        {
            var p = $"model.layers.{l}.";
            var a = p + "self_attn.";
            var attention = new ReferenceAttention
            {
                Heads = heads, KvHeads = kvHeads, HeadDim = headDim, RotaryDim = headDim,
                InverseFrequencies = frequencies, RopeFactor = mscale,
                Q = M(a + "q_proj.weight"), K = M(a + "k_proj.weight"), V = M(a + "v_proj.weight"), O = M(a + "o_proj.weight"),
                QBias = Vec(a + "q_proj.bias"), KBias = Vec(a + "k_proj.bias"), VBias = Vec(a + "v_proj.bias"), OBias = Vec(a + "o_proj.bias"),
                SlidingWindow = c["sliding_window"]!.GetValue<int>(),
            };
            var (inW, inB) = (Vec(p + "input_layernorm.weight"), Vec(p + "input_layernorm.bias"));
            var attn = attention.Forward(x.Select(v => LayerNorm(v, inW, inB, eps)).ToArray());
            x = x.Select((v, t) => Reference.Add(v, attn[t])).ToArray();

            var (postW, postB) = (Vec(p + "post_attention_layernorm.weight"), Vec(p + "post_attention_layernorm.bias"));
            var gate = M(p + "block_sparse_moe.gate.weight");
            for (int t = 0; t < x.Length; t++)
            {
                var h = LayerNorm(x[t], postW, postB, eps);
                var (picked, weights) = SparseMixer(Reference.MatVec(gate, h), jitter, null);
                var mlp = new double[TinyModel.Hidden];
                for (int k = 0; k < picked.Length; k++)
                {
                    var ep = $"{p}block_sparse_moe.experts.{picked[k]}.";
                    var y = Reference.GatedMlp(M(ep + "w1.weight"), M(ep + "w3.weight"), M(ep + "w2.weight"), h);
                    mlp = Reference.Add(mlp, Reference.Scale(y, weights[k]));
                }
                x[t] = Reference.Add(x[t], mlp);
            }
        }
        var (normW, normB) = (Vec("model.norm.weight"), Vec("model.norm.bias"));
        var head = M("lm_head.weight");
        var headBias = Vec("lm_head.bias");
        var logits = new double[x.Length, head.GetLength(0)];
        for (int t = 0; t < x.Length; t++)
        {
            var row = Reference.Add(Reference.MatVec(head, LayerNorm(x[t], normW, normB, eps)), headBias);
            for (int v = 0; v < row.Length; v++) logits[t, v] = row[v];
        }
        return logits;
    }
}
