using MoECompress.Compression.Model;
using static TorchSharp.torch;

namespace MoECompress.Tests.Model;

/// <summary>
/// GLM-4.5 forward pass against a hand-written double-precision reference of transformers' Glm4MoeForCausalLM: q/k/v
/// biases, per-head q/k RMSNorm, RoPE on half of each head, a dense first layer, then MoE layers with sigmoid scores,
/// the correction bias used only to choose (group-limited: 2 groups, the best by the sum of its two best biased
/// scores is kept), unbiased weights renormalised and scaled by routed_scaling_factor, plus the shared expert.
/// </summary>
public sealed class Glm4MoeForwardTests
{
    [Fact]
    public void LogitsMatchTheHandWrittenReference()
    {
        using var model = TinyModel.Create("glm4_moe", layers: 3, experts: 8, topK: 2);
        var engine = model.Engine();
        Assert.Equal(2, engine.Config.RotaryDim);
        Assert.Equal(RouterGroupSelection.SumOfTopTwoPerGroup, engine.Config.Router.GroupSelection);
        var tokens = TinyModel.Tokens(61, 7);

        using var resident = engine.LoadResident();
        using var scope = NewDisposeScope();
        var actual = Reference.Matrix(resident.Forward(tokens));
        var expected = ReferenceLogits(model, tokens);
        Reference.AssertRelativelyClose(expected, actual, 1e-5);
    }

    [Fact]
    public void TheCorrectionBiasChoosesButDoesNotWeigh()
    {
        // Raising one expert's bias makes every token of that layer pick it, yet its weight stays its sigmoid score
        // renormalised over the chosen pair — exactly what the reference computes with the same bias.
        using var model = TinyModel.Create("glm4_moe", layers: 2, experts: 8, topK: 2);
        using (var s = NewDisposeScope())
            model.Source.Set("model.layers.1.mlp.gate.e_score_correction_bias", tensor(new float[] { 0, 0, 0, 0, 0, 9, 0, 0 }));
        var tokens = TinyModel.Tokens(62, 5);
        var chosen = new List<long>();
        var observer = new DelegateObserver(onMoEBlock: a => chosen.AddRange(a.Routing.TopKIndices.data<long>().ToArray()));
        using var resident = model.Engine().LoadResident();
        using var scope = NewDisposeScope();
        var actual = Reference.Matrix(resident.Forward(tokens, observer));
        Assert.Equal(tokens.Length, chosen.Count(e => e == 5));
        Reference.AssertRelativelyClose(ReferenceLogits(model, tokens), actual, 1e-5);
    }

    /// <summary>Logits [L, V] of the GLM-4.5 model in <paramref name="model"/>'s tensors, computed without the engine.</summary>
    private static double[,] ReferenceLogits(TinyModel model, int[] tokens)
    {
        var src = model.Source;
        var c = model.Config;
        double eps = c["rms_norm_eps"]!.GetValue<double>();
        int heads = c["num_attention_heads"]!.GetValue<int>(), kvHeads = c["num_key_value_heads"]!.GetValue<int>();
        int headDim = c["head_dim"]!.GetValue<int>(), rotary = (int)(headDim * c["partial_rotary_factor"]!.GetValue<double>());
        int experts = c["n_routed_experts"]!.GetValue<int>(), topK = c["num_experts_per_tok"]!.GetValue<int>();
        int groups = c["n_group"]!.GetValue<int>(), keptGroups = c["topk_group"]!.GetValue<int>();
        double scaling = c["routed_scaling_factor"]!.GetValue<double>();
        int firstDense = c["first_k_dense_replace"]!.GetValue<int>();
        double[,] M(string n) => Reference.Matrix(src.Get(n));
        double[] Vec(string n) => Reference.Vector(src.Get(n));

        var embed = M("model.embed_tokens.weight");
        var x = tokens.Select(t => Reference.Row(embed, t)).ToArray();
        for (int l = 0; l < model.MoE.NumLayers; l++)
        {
            var p = $"model.layers.{l}.";
            var attention = new ReferenceAttention
            {
                Heads = heads, KvHeads = kvHeads, HeadDim = headDim, RotaryDim = rotary,
                InverseFrequencies = ReferenceAttention.DefaultFrequencies(rotary, c["rope_theta"]!.GetValue<double>()),
                Q = M(p + "self_attn.q_proj.weight"), K = M(p + "self_attn.k_proj.weight"),
                V = M(p + "self_attn.v_proj.weight"), O = M(p + "self_attn.o_proj.weight"),
                QBias = Vec(p + "self_attn.q_proj.bias"), KBias = Vec(p + "self_attn.k_proj.bias"), VBias = Vec(p + "self_attn.v_proj.bias"),
                QNorm = Vec(p + "self_attn.q_norm.weight"), KNorm = Vec(p + "self_attn.k_norm.weight"), NormEps = eps,
            };
            var inputNorm = Vec(p + "input_layernorm.weight");
            var attn = attention.Forward(x.Select(v => Reference.RmsNorm(v, inputNorm, eps)).ToArray());
            x = x.Select((v, t) => Reference.Add(v, attn[t])).ToArray();
            var postNorm = Vec(p + "post_attention_layernorm.weight");
            for (int t = 0; t < x.Length; t++)
            {
                var h = Reference.RmsNorm(x[t], postNorm, eps);
                double[] mlp;
                if (l < firstDense)
                    mlp = Reference.GatedMlp(M(p + "mlp.gate_proj.weight"), M(p + "mlp.up_proj.weight"), M(p + "mlp.down_proj.weight"), h);
                else
                {
                    var scores = Reference.MatVec(M(p + "mlp.gate.weight"), h).Select(Reference.Sigmoid).ToArray();
                    var bias = Vec(p + "mlp.gate.e_score_correction_bias");
                    var choice = scores.Select((s, e) => s + bias[e]).ToArray();
                    int size = experts / groups;
                    var groupScore = Enumerable.Range(0, groups)
                        .Select(g => choice.Skip(g * size).Take(size).OrderByDescending(v => v).Take(2).Sum()).ToArray();
                    var kept = Enumerable.Range(0, groups).OrderByDescending(g => groupScore[g]).Take(keptGroups).ToHashSet();
                    var picked = Enumerable.Range(0, experts).Where(e => kept.Contains(e / size))
                        .OrderByDescending(e => choice[e]).Take(topK).ToArray();
                    double sum = picked.Sum(e => scores[e]) + 1e-20;
                    mlp = Reference.GatedMlp(M(p + "mlp.shared_experts.gate_proj.weight"), M(p + "mlp.shared_experts.up_proj.weight"),
                        M(p + "mlp.shared_experts.down_proj.weight"), h);
                    foreach (var e in picked)
                    {
                        var ep = $"{p}mlp.experts.{e}.";
                        var y = Reference.GatedMlp(M(ep + "gate_proj.weight"), M(ep + "up_proj.weight"), M(ep + "down_proj.weight"), h);
                        mlp = Reference.Add(mlp, Reference.Scale(y, scores[e] / sum * scaling));
                    }
                }
                x[t] = Reference.Add(x[t], mlp);
            }
        }
        return Reference.HeadLogits(x, Vec("model.norm.weight"), M("lm_head.weight"), eps);
    }
}
