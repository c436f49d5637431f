using MoECompress.Compression.Model;
using static TorchSharp.torch;

namespace MoECompress.Tests.Model;

/// <summary>
/// GPT-OSS forward pass against a hand-written double-precision reference of transformers' GptOssForCausalLM:
/// attention with biases and per-head sinks, sliding window (3) on even layers and full attention on odd ones, YaRN
/// RoPE (no truncation, attention factor 0.1·ln(factor) + 1), router with bias choosing the top-k logits and weighing
/// them by a softmax over those k, fused transposed experts with interleaved gate/up and biases, clamped SwiGLU
/// (alpha 1.702, limit 7).
/// </summary>
public sealed class GptOssForwardTests
{
    [Fact]
    public void LogitsMatchTheHandWrittenReference()
    {
        using var model = TinyModel.Create("gpt_oss", layers: 3, experts: 8, topK: 2);
        var engine = model.Engine();
        Assert.Equal(new[] { true, false, true }, engine.Config.SlidingWindowLayers);
        var tokens = TinyModel.Tokens(81, 8);
        using var resident = engine.LoadResident();
        using var scope = NewDisposeScope();
        var actual = Reference.Matrix(resident.Forward(tokens));
        Reference.AssertRelativelyClose(ReferenceLogits(model, tokens), actual, 1e-5);
    }

    [Fact]
    public void TheClampBindsOnLargeActivations()
    {
        // Scaled-up expert weights push gate and up far past ±7: without the clamp the reference would disagree.
        using var model = TinyModel.Create("gpt_oss", layers: 2, experts: 8, topK: 2);
        using (var s = NewDisposeScope())
            foreach (var name in new[] { "model.layers.0.mlp.experts.gate_up_proj", "model.layers.1.mlp.experts.gate_up_proj" })
                model.Source.Set(name, model.Source.Get(name) * 40);
        var tokens = TinyModel.Tokens(82, 6);
        double largest = 0;
        var observer = new DelegateObserver(onExpert: a => largest = Math.Max(largest, a.Intermediate.abs().max().item<float>()));
        using var resident = model.Engine().LoadResident();
        using var scope = NewDisposeScope();
        var actual = Reference.Matrix(resident.Forward(tokens, observer));
        Assert.True(largest <= 8 * 7.0 + 1e-3, $"intermediate {largest} exceeds (limit + 1) · limit");
        Reference.AssertRelativelyClose(ReferenceLogits(model, tokens), actual, 1e-5);
    }

    private static double[,] ReferenceLogits(TinyModel model, int[] tokens)
    {
        var src = model.Source;
        var c = model.Config;
        double eps = c["rms_norm_eps"]!.GetValue<double>();
        int heads = c["num_attention_heads"]!.GetValue<int>(), kvHeads = c["num_key_value_heads"]!.GetValue<int>();
        int headDim = c["head_dim"]!.GetValue<int>();
        int topK = c["num_experts_per_tok"]!.GetValue<int>(), inter = c["intermediate_size"]!.GetValue<int>();
        int window = c["sliding_window"]!.GetValue<int>();
        var rope = c["rope_scaling"]!;
        double factor = rope["factor"]!.GetValue<double>();
        var (frequencies, attentionFactor) = YarnFrequencies(headDim, c["rope_theta"]!.GetValue<double>(), factor,
            rope["original_max_position_embeddings"]!.GetValue<int>(), rope["beta_fast"]!.GetValue<double>(), rope["beta_slow"]!.GetValue<double>());
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
                InverseFrequencies = frequencies, RopeFactor = attentionFactor,
                Q = M(a + "q_proj.weight"), K = M(a + "k_proj.weight"), V = M(a + "v_proj.weight"), O = M(a + "o_proj.weight"),
                QBias = Vec(a + "q_proj.bias"), KBias = Vec(a + "k_proj.bias"), VBias = Vec(a + "v_proj.bias"), OBias = Vec(a + "o_proj.bias"),
                Sinks = Vec(a + "sinks"),
                SlidingWindow = (string?)c["layer_types"]![l] == "sliding_attention" ? window : null,
            };
            var inputNorm = Vec(p + "input_layernorm.weight");
            var attn = attention.Forward(x.Select(v => Reference.RmsNorm(v, inputNorm, eps)).ToArray());
            x = x.Select((v, t) => Reference.Add(v, attn[t])).ToArray();

            var postNorm = Vec(p + "post_attention_layernorm.weight");
            var router = M(p + "mlp.router.weight");
            var routerBias = Vec(p + "mlp.router.bias");
            var gateUp = Reference.Vector(src.Get(p + "mlp.experts.gate_up_proj"));   // [E, H, 2I]
            var gateUpBias = Reference.Vector(src.Get(p + "mlp.experts.gate_up_proj_bias"));
            var down = Reference.Vector(src.Get(p + "mlp.experts.down_proj"));         // [E, I, H]
            var downBias = Reference.Vector(src.Get(p + "mlp.experts.down_proj_bias"));
            int h = TinyModel.Hidden;
            for (int t = 0; t < x.Length; t++)
            {
                var y = Reference.RmsNorm(x[t], postNorm, eps);
                var (picked, weights) = Reference.TopKSoftmax(Reference.Add(Reference.MatVec(router, y), routerBias), topK);
                var mlp = new double[h];
                for (int k = 0; k < topK; k++)
                {
                    int e = picked[k];
                    var hidden = new double[inter];
                    for (int i = 0; i < inter; i++)
                    {
                        double gate = gateUpBias[e * 2 * inter + 2 * i], up = gateUpBias[e * 2 * inter + 2 * i + 1];
                        for (int j = 0; j < h; j++)
                        {
                            gate += y[j] * gateUp[(e * h + j) * 2 * inter + 2 * i];
                            up += y[j] * gateUp[(e * h + j) * 2 * inter + 2 * i + 1];
                        }
                        gate = Math.Min(gate, 7.0);
                        up = Math.Clamp(up, -7.0, 7.0);
                        hidden[i] = (up + 1) * gate * Reference.Sigmoid(1.702 * gate);
                    }
                    for (int j = 0; j < h; j++)
                    {
                        double o = downBias[e * h + j];
                        for (int i = 0; i < inter; i++) o += hidden[i] * down[(e * inter + i) * h + j];
                        mlp[j] += weights[k] * o;
                    }
                }
                x[t] = Reference.Add(x[t], mlp);
            }
        }
        return Reference.HeadLogits(x, Vec("model.norm.weight"), M("lm_head.weight"), eps);
    }

    /// <summary>
    /// YaRN as transformers computes it without truncation: per frequency a blend of extrapolation (θ^(−2i/d)) and
    /// interpolation (that / factor) along a linear ramp between the correction dimensions of beta_fast and beta_slow;
    /// cos and sin scaled by 0.1·ln(factor) + 1.
    /// </summary>
    private static (double[] Frequencies, double AttentionFactor) YarnFrequencies(int dim, double theta, double factor,
        int original, double betaFast, double betaSlow)
    {
        double CorrectionDim(double rotations) => dim * Math.Log(original / (rotations * 2 * Math.PI)) / (2 * Math.Log(theta));
        double low = Math.Max(CorrectionDim(betaFast), 0), high = Math.Min(CorrectionDim(betaSlow), dim - 1);
        if (low == high) high += 0.001;
        var frequencies = new double[dim / 2];
        for (int i = 0; i < dim / 2; i++)
        {
            double extrapolation = Math.Pow(theta, -2.0 * i / dim), interpolation = extrapolation / factor;
            double ramp = Math.Clamp((i - low) / (high - low), 0, 1);
            frequencies[i] = interpolation * ramp + extrapolation * (1 - ramp);
        }
        return (frequencies, 0.1 * Math.Log(factor) + 1);
    }
}
