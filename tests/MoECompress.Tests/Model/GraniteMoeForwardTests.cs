using MoECompress.Compression.Model;
using MoECompress.Formats.Errors;
using static TorchSharp.torch;

namespace MoECompress.Tests.Model;

/// <summary>
/// GraniteMoE / GraniteMoeShared forward pass against a hand-written double-precision reference of transformers'
/// GraniteMoeForCausalLM: embeddings times embedding_multiplier; attention scaled by attention_multiplier instead of
/// 1/sqrt(head_dim); attention and MoE outputs times residual_multiplier before each residual add; router
/// <c>router.layer</c> choosing the top-k logits, weighted by a softmax over those k; fused experts input_linear
/// [E, 2I, H] split into gate (first I rows) and up (last I rows), output_linear [E, H, I]; GraniteMoeShared's
/// shared_mlp (same split) added to the routed output; tied lm_head; logits divided by logits_scaling.
/// </summary>
public sealed class GraniteMoeForwardTests
{
    [Theory]
    [InlineData("granitemoe")]
    [InlineData("granitemoeshared")]
    public void LogitsMatchTheHandWrittenReference(string kind)
    {
        using var model = TinyModel.Create(kind, layers: 3, experts: 8, topK: 3);
        var engine = model.Engine();
        Assert.Equal(0.3, engine.Config.AttentionScale);
        Assert.False(model.Source.Contains("lm_head.weight"));
        var tokens = TinyModel.Tokens(71, 9);
        using var resident = engine.LoadResident();
        Assert.Equal(kind == "granitemoeshared", resident.Layers[0].MoE!.SharedExpert is not null);
        using var scope = NewDisposeScope();
        var actual = Reference.Matrix(resident.Forward(tokens));
        Reference.AssertRelativelyClose(ReferenceLogits(model, tokens), actual, 1e-5);
    }

    [Fact]
    public void TheMultipliersDefaultToOne()
    {
        // transformers' GraniteMoeConfig defaults every multiplier to 1.0 — attention_multiplier too (not 1/sqrt(d)).
        using var model = TinyModel.Create("granitemoe", configure: c =>
        {
            foreach (var key in new[] { "embedding_multiplier", "attention_multiplier", "residual_multiplier", "logits_scaling" }) c.Remove(key);
        });
        var config = model.Engine().Config;
        Assert.Equal(1.0, config.AttentionScale);
        Assert.Equal(1.0, config.EmbeddingMultiplier);
        Assert.Equal(1.0, config.ResidualMultiplier);
        Assert.Equal(1.0, config.LogitsScaling);
        var tokens = TinyModel.Tokens(72, 5);
        using var resident = model.Engine().LoadResident();
        using var scope = NewDisposeScope();
        Reference.AssertRelativelyClose(ReferenceLogits(model, tokens), Reference.Matrix(resident.Forward(tokens)), 1e-5);
    }

    [Theory]
    [InlineData("position_embedding_type", "nope")]
    [InlineData("logits_scaling", 0.0)]
    public void UnusableKeysAreNamed(string key, object value)
    {
        using var model = TinyModel.Create("granitemoe", configure: c =>
            c[key] = value is string s ? System.Text.Json.Nodes.JsonValue.Create(s) : System.Text.Json.Nodes.JsonValue.Create((double)value));
        var ex = Assert.Throws<MoeCompressException>(() => model.Engine());
        Assert.Equal(ErrorKind.InvalidConfig, ex.Kind);
        Assert.Contains(key, ex.Message);
    }

    [Fact]
    public void AMissingSharedMlpIsNamed()
    {
        using var model = TinyModel.Create("granitemoeshared", layers: 2);
        model.Source.Remove("model.layers.1.shared_mlp.input_linear.weight");
        var ex = Assert.Throws<MoeCompressException>(() => model.Engine().LoadLayer(1).Dispose());
        Assert.Equal(ErrorKind.InvalidCheckpoint, ex.Kind);
        Assert.Contains("model.layers.1.shared_mlp.input_linear.weight", ex.Message);
    }

    /// <summary>Logits [L, V] of the GraniteMoE model in <paramref name="model"/>'s tensors, computed without the engine.</summary>
    private static double[,] ReferenceLogits(TinyModel model, int[] tokens)
    {
        var src = model.Source;
        var c = model.Config;
        double Multiplier(string key) => c[key]?.GetValue<double>() ?? 1.0;
        double eps = c["rms_norm_eps"]!.GetValue<double>();
        int heads = c["num_attention_heads"]!.GetValue<int>(), kvHeads = c["num_key_value_heads"]!.GetValue<int>();
        int h = TinyModel.Hidden, headDim = h / heads;
        int topK = c["num_experts_per_tok"]!.GetValue<int>(), inter = c["intermediate_size"]!.GetValue<int>();
        int shared = c["shared_intermediate_size"]?.GetValue<int>() ?? 0;
        double residual = Multiplier("residual_multiplier");
        double[,] M(string n) => Reference.Matrix(src.Get(n));
        double[] Vec(string n) => Reference.Vector(src.Get(n));

        var embed = M("model.embed_tokens.weight");
        var x = tokens.Select(t => Reference.Scale(Reference.Row(embed, t), Multiplier("embedding_multiplier"))).ToArray();
        for (int l = 0; l < model.MoE.NumLayers; l++)
        {
            var p = $"model.layers.{l}.";
            var a = p + "self_attn.";
            // ReferenceAttention scales q·k by 1/sqrt(head_dim): folding attention_multiplier·sqrt(head_dim) into Q
            // gives q·k·attention_multiplier.
            var fold = Multiplier("attention_multiplier") * Math.Sqrt(headDim);
            var q = M(a + "q_proj.weight");
            for (int i = 0; i < q.GetLength(0); i++)
                for (int j = 0; j < q.GetLength(1); j++) q[i, j] *= fold;
            var attention = new ReferenceAttention
            {
                Heads = heads, KvHeads = kvHeads, HeadDim = headDim, RotaryDim = headDim,
                InverseFrequencies = ReferenceAttention.DefaultFrequencies(headDim, c["rope_theta"]!.GetValue<double>()),
                Q = q, K = M(a + "k_proj.weight"), V = M(a + "v_proj.weight"), O = M(a + "o_proj.weight"),
            };
            var inputNorm = Vec(p + "input_layernorm.weight");
            var attn = attention.Forward(x.Select(v => Reference.RmsNorm(v, inputNorm, eps)).ToArray());
            x = x.Select((v, t) => Reference.Add(v, Reference.Scale(attn[t], residual))).ToArray();

            var postNorm = Vec(p + "post_attention_layernorm.weight");
            var router = M(p + "block_sparse_moe.router.layer.weight");
            var input = Reference.Vector(src.Get(p + "block_sparse_moe.input_linear.weight"));   // [E, 2I, H]
            var output = Reference.Vector(src.Get(p + "block_sparse_moe.output_linear.weight")); // [E, H, I]
            for (int t = 0; t < x.Length; t++)
            {
                var y = Reference.RmsNorm(x[t], postNorm, eps);
                var (picked, weights) = Reference.TopKSoftmax(Reference.MatVec(router, y), topK);
                var mlp = new double[h];
                for (int k = 0; k < topK; k++)
                {
                    int e = picked[k];
                    var hidden = new double[inter];
                    for (int i = 0; i < inter; i++)
                    {
                        double gate = 0, up = 0;
                        for (int j = 0; j < h; j++)
                        {
                            gate += input[(e * 2 * inter + i) * h + j] * y[j];
                            up += input[(e * 2 * inter + inter + i) * h + j] * y[j];
                        }
                        hidden[i] = Reference.Silu(gate) * up;
                    }
                    for (int j = 0; j < h; j++)
                    {
                        double o = 0;
                        for (int i = 0; i < inter; i++) o += output[(e * h + j) * inter + i] * hidden[i];
                        mlp[j] += weights[k] * o;
                    }
                }
                if (shared > 0)
                {
                    var fused = M(p + "shared_mlp.input_linear.weight");   // [2S, H]
                    var g = Reference.MatVec(fused, y);
                    var hs = Enumerable.Range(0, shared).Select(i => Reference.Silu(g[i]) * g[shared + i]).ToArray();
                    mlp = Reference.Add(mlp, Reference.MatVec(M(p + "shared_mlp.output_linear.weight"), hs));
                }
                x[t] = Reference.Add(x[t], Reference.Scale(mlp, residual));
            }
        }
        var logitsOut = Reference.HeadLogits(x, Vec("model.norm.weight"), embed, eps);
        double scaling = Multiplier("logits_scaling");
        for (int t = 0; t < logitsOut.GetLength(0); t++)
            for (int v = 0; v < logitsOut.GetLength(1); v++) logitsOut[t, v] /= scaling;
        return logitsOut;
    }
}
