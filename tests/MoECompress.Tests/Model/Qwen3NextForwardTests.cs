using MoECompress.Compression.Model;
using static TorchSharp.torch;

namespace MoECompress.Tests.Model;

/// <summary>
/// Qwen3-Next and Qwen3.5-MoE forward passes against a hand-written double-precision reference of transformers'
/// Qwen3NextForCausalLM / Qwen3_5MoeForCausalLM: zero-centred RMSNorms (1 + weight), hybrid layers — Gated DeltaNet
/// (causal depthwise conv + SiLU, L2-normalised q/k, q/√d_k, β = sigmoid(b), g = −exp(A_log)·softplus(a + dt_bias),
/// the delta rule one position at a time, RMSNorm gated by SiLU(z)) and gated full attention (sigmoid gate from q_proj,
/// per-head q/k norms, RoPE on half of each head) —, softmax top-k routing renormalised, plus the sigmoid-gated
/// shared expert. Qwen3-Next's fused projections are read with its per-key-head grouping, Qwen3.5's split ones as they are.
/// </summary>
public sealed class Qwen3NextForwardTests
{
    [Theory]
    [InlineData("qwen3_next")]
    [InlineData("qwen3_5_moe")]
    public void LogitsMatchTheHandWrittenReference(string kind)
    {
        using var model = TinyModel.Create(kind, layers: 3, experts: 4, topK: 2);
        var engine = model.Engine();
        Assert.Equal("qwen3_next", engine.Config.ModelType);
        Assert.Equal(new[] { true, false, true }, engine.Config.LinearAttentionLayers);
        Assert.Equal(2, engine.Config.RotaryDim);
        var tokens = TinyModel.Tokens(71, 7);

        using var resident = engine.LoadResident();
        using var scope = NewDisposeScope();
        var actual = Reference.Matrix(resident.Forward(tokens));
        Reference.AssertRelativelyClose(ReferenceLogits(model, tokens), actual, 1e-5);
    }

    [Fact]
    public void LaterTokensDoNotChangeEarlierLogits()
    {
        // The recurrence and the convolution are causal: a prefix gives the same logits as the whole sequence's first rows.
        using var model = TinyModel.Create("qwen3_next", layers: 3);
        using var resident = model.Engine().LoadResident();
        using var scope = NewDisposeScope();
        var tokens = TinyModel.Tokens(72, 6);
        var whole = Reference.Matrix(resident.Forward(tokens));
        var prefix = Reference.Matrix(resident.Forward(tokens.Take(4).ToArray()));
        var firstRows = new double[4, whole.GetLength(1)];
        for (int t = 0; t < 4; t++)
            for (int v = 0; v < whole.GetLength(1); v++) firstRows[t, v] = whole[t, v];
        Reference.AssertRelativelyClose(firstRows, prefix, 1e-5);
    }

    [Fact]
    public void MissingOrMisshapenDeltaNetTensorsAreNamed()
    {
        using var model = TinyModel.Create("qwen3_next", layers: 2);
        model.Source.Remove("model.layers.0.linear_attn.in_proj_ba.weight");
        var missing = Assert.Throws<Formats.Errors.MoeCompressException>(() => model.Engine().LoadLayer(0).Dispose());
        Assert.Contains("model.layers.0.linear_attn.in_proj_ba.weight", missing.Message);
        Assert.Equal(Formats.Errors.ErrorKind.InvalidCheckpoint, missing.Kind);

        using var split = TinyModel.Create("qwen3_5_moe", layers: 2);
        using (var s = NewDisposeScope())
            split.Source.Set("model.language_model.layers.0.linear_attn.conv1d.weight", zeros(20, 1, 4));
        var shape = Assert.Throws<Formats.Errors.MoeCompressException>(() => split.Engine().LoadLayer(0).Dispose());
        Assert.Contains("linear_attn.conv1d.weight", shape.Message);
        Assert.Contains("[20, 1, 4]", shape.Message);
    }

    /// <summary>
    /// The delta rule worked by hand (d_k = 2, d_v = 1): S₀ = 0.
    /// t=1: q=[1,0], k=[1,0], v=2, decay 1, β=½ → δ = ½(2 − 0) = 1, S = [1, 0]ᵀ, o = 1.
    /// t=2: q=[0,1], k=[0.6,0.8], v=1, decay ½, β=1 → S = [0.5, 0]ᵀ, Sᵀk = 0.3, δ = 0.7, S = [0.92, 0.56]ᵀ, o = 0.56.
    /// t=3: q=[1,1], decay 1, β=0 → S unchanged, o = 1.48.
    /// </summary>
    [Fact]
    public void DeltaRuleMatchesAHandComputedCase()
    {
        using var scope = NewDisposeScope();
        var q = tensor(new float[] { 1, 0, 0, 1, 1, 1 }, new long[] { 1, 3, 1, 2 });
        var k = tensor(new float[] { 1, 0, 0.6f, 0.8f, 0, 0 }, new long[] { 1, 3, 1, 2 });
        var v = tensor(new float[] { 2, 1, 5 }, new long[] { 1, 3, 1, 1 });
        var g = tensor(new float[] { 0, (float)Math.Log(0.5), 0 }, new long[] { 1, 3, 1 });
        var beta = tensor(new float[] { 0.5f, 1, 0 }, new long[] { 1, 3, 1 });
        var o = GatedDeltaNet.Recurrence(q, k, v, g, beta).to(ScalarType.Float64).data<double>().ToArray();
        Reference.AssertClose(new[] { 1.0, 0.56, 1.48 }, o, 1e-6, "o");
    }

    /// <summary>Logits [L, V] of the hybrid model in <paramref name="model"/>'s tensors, computed without the engine.</summary>
    private static double[,] ReferenceLogits(TinyModel model, int[] tokens)
    {
        var src = model.Source;
        var c = model.Config;
        var prefix = model.MoE.ModelPrefix;
        double eps = c["rms_norm_eps"]!.GetValue<double>();
        int heads = c["num_attention_heads"]!.GetValue<int>(), kvHeads = c["num_key_value_heads"]!.GetValue<int>();
        int headDim = c["head_dim"]!.GetValue<int>(), rotary = headDim / 2;
        int experts = c["num_experts"]!.GetValue<int>(), topK = c["num_experts_per_tok"]!.GetValue<int>();
        double[,] M(string n) => Reference.Matrix(src.Get(n));
        double[] Vec(string n) => Reference.Vector(src.Get(n));
        // Zero-centred RMSNorm: the stored weight is the offset from 1.
        double[] Centred(string n) => Vec(n).Select(w => 1 + w).ToArray();

        var embed = M(prefix + "embed_tokens.weight");
        var x = tokens.Select(t => Reference.Row(embed, t)).ToArray();
        for (int l = 0; l < model.MoE.NumLayers; l++)
        {
            var p = $"{prefix}layers.{l}.";
            var inputNorm = Centred(p + "input_layernorm.weight");
            var normed = x.Select(v => Reference.RmsNorm(v, inputNorm, eps)).ToArray();
            double[][] mixed;
            if (model.IsLinearAttention(l))
                mixed = DeltaNet(model, p + "linear_attn.", normed, eps);
            else
                mixed = new ReferenceAttention
                {
                    Heads = heads, KvHeads = kvHeads, HeadDim = headDim, RotaryDim = rotary, OutputGate = true,
                    InverseFrequencies = ReferenceAttention.DefaultFrequencies(rotary, 100.0),
                    Q = M(p + "self_attn.q_proj.weight"), K = M(p + "self_attn.k_proj.weight"),
                    V = M(p + "self_attn.v_proj.weight"), O = M(p + "self_attn.o_proj.weight"),
                    QNorm = Centred(p + "self_attn.q_norm.weight"), KNorm = Centred(p + "self_attn.k_norm.weight"), NormEps = eps,
                }.Forward(normed);
            x = x.Select((v, t) => Reference.Add(v, mixed[t])).ToArray();
            var postNorm = Centred(p + "post_attention_layernorm.weight");
            for (int t = 0; t < x.Length; t++)
            {
                var h = Reference.RmsNorm(x[t], postNorm, eps);
                var probabilities = Reference.Softmax(Reference.MatVec(M(p + "mlp.gate.weight"), h));
                var picked = Enumerable.Range(0, experts).OrderByDescending(e => probabilities[e]).Take(topK).ToArray();
                double sum = picked.Sum(e => probabilities[e]);
                var shared = Reference.GatedMlp(M(p + "mlp.shared_expert.gate_proj.weight"), M(p + "mlp.shared_expert.up_proj.weight"),
                    M(p + "mlp.shared_expert.down_proj.weight"), h);
                var mlp = Reference.Scale(shared, Reference.Sigmoid(Reference.Dot(Reference.Row(M(p + "mlp.shared_expert_gate.weight"), 0), h)));
                foreach (var e in picked)
                {
                    var ep = $"{p}mlp.experts.{e}.";
                    var y = Reference.GatedMlp(M(ep + "gate_proj.weight"), M(ep + "up_proj.weight"), M(ep + "down_proj.weight"), h);
                    mlp = Reference.Add(mlp, Reference.Scale(y, probabilities[e] / sum));
                }
                x[t] = Reference.Add(x[t], mlp);
            }
        }
        return Reference.HeadLogits(x, Centred(prefix + "norm.weight"), M("lm_head.weight"), eps);
    }

    /// <summary>Gated DeltaNet over one sequence of normed inputs, scalar by scalar.</summary>
    private static double[][] DeltaNet(TinyModel model, string p, double[][] x, double eps)
    {
        var c = model.Config;
        var src = model.Source;
        int nk = c["linear_num_key_heads"]!.GetValue<int>(), nv = c["linear_num_value_heads"]!.GetValue<int>();
        int dk = c["linear_key_head_dim"]!.GetValue<int>(), dv = c["linear_value_head_dim"]!.GetValue<int>();
        int kernel = c["linear_conv_kernel_dim"]!.GetValue<int>(), r = nv / nk, len = x.Length;
        int keyDim = nk * dk, channels = 2 * keyDim + nv * dv;
        double[,] M(string n) => Reference.Matrix(src.Get(n));
        double[] Vec(string n) => Reference.Vector(src.Get(n));

        // Projections: mixed = [q (all key heads), k (all key heads), v (all value heads)], z per value head, b and a per value head.
        var mixed = new double[len][];
        var z = new double[len][];
        var bLogit = new double[len][];
        var aInput = new double[len][];
        for (int t = 0; t < len; t++)
        {
            if (model.Kind == "qwen3_next")
            {
                // in_proj_qkvz rows per key head j: [q_j (dk), k_j (dk), v of heads j·r.. (r·dv), z of heads j·r.. (r·dv)];
                // in_proj_ba rows per key head j: [b of heads j·r.. (r), a of heads j·r.. (r)].
                var qkvz = Reference.MatVec(M(p + "in_proj_qkvz.weight"), x[t]);
                var ba = Reference.MatVec(M(p + "in_proj_ba.weight"), x[t]);
                int block = 2 * dk + 2 * r * dv;
                mixed[t] = new double[channels];
                z[t] = new double[nv * dv];
                bLogit[t] = new double[nv];
                aInput[t] = new double[nv];
                for (int j = 0; j < nk; j++)
                {
                    for (int d = 0; d < dk; d++)
                    {
                        mixed[t][j * dk + d] = qkvz[j * block + d];
                        mixed[t][keyDim + j * dk + d] = qkvz[j * block + dk + d];
                    }
                    for (int d = 0; d < r * dv; d++)
                    {
                        mixed[t][2 * keyDim + j * r * dv + d] = qkvz[j * block + 2 * dk + d];
                        z[t][j * r * dv + d] = qkvz[j * block + 2 * dk + r * dv + d];
                    }
                    for (int i = 0; i < r; i++)
                    {
                        bLogit[t][j * r + i] = ba[j * 2 * r + i];
                        aInput[t][j * r + i] = ba[j * 2 * r + r + i];
                    }
                }
            }
            else
            {
                mixed[t] = Reference.MatVec(M(p + "in_proj_qkv.weight"), x[t]);
                z[t] = Reference.MatVec(M(p + "in_proj_z.weight"), x[t]);
                bLogit[t] = Reference.MatVec(M(p + "in_proj_b.weight"), x[t]);
                aInput[t] = Reference.MatVec(M(p + "in_proj_a.weight"), x[t]);
            }
        }

        // Depthwise causal conv (cross-correlation, left zero padding: tap kernel−1 sees the current position), then SiLU.
        var convW = src.Get(p + "conv1d.weight").to(ScalarType.Float32).contiguous().data<float>().ToArray();
        var conv = new double[len][];
        for (int t = 0; t < len; t++)
        {
            conv[t] = new double[channels];
            for (int ch = 0; ch < channels; ch++)
            {
                double acc = 0;
                for (int j = 0; j < kernel; j++)
                {
                    int source = t - (kernel - 1) + j;
                    if (source >= 0) acc += convW[ch * kernel + j] * mixed[source][ch];
                }
                conv[t][ch] = Reference.Silu(acc);
            }
        }

        var aLog = Vec(p + "A_log");
        var dtBias = Vec(p + "dt_bias");
        var normW = Vec(p + "norm.weight");
        var outW = M(p + "out_proj.weight");
        static double[] L2(double[] v)
        {
            double inv = 1 / Math.Sqrt(v.Sum(e => e * e) + 1e-6);
            return v.Select(e => e * inv).ToArray();
        }
        var state = new double[nv][,];
        for (int hv = 0; hv < nv; hv++) state[hv] = new double[dk, dv];
        var output = new double[len][];
        for (int t = 0; t < len; t++)
        {
            var gated = new double[nv * dv];
            for (int hv = 0; hv < nv; hv++)
            {
                int kh = hv / r;
                var q = L2(conv[t].Skip(kh * dk).Take(dk).ToArray()).Select(e => e / Math.Sqrt(dk)).ToArray();
                var k = L2(conv[t].Skip(keyDim + kh * dk).Take(dk).ToArray());
                var v = conv[t].Skip(2 * keyDim + hv * dv).Take(dv).ToArray();
                double beta = Reference.Sigmoid(bLogit[t][hv]);
                double softplus = Math.Log(1 + Math.Exp(aInput[t][hv] + dtBias[hv]));
                double decay = Math.Exp(-Math.Exp(aLog[hv]) * softplus);
                var s = state[hv];
                for (int i = 0; i < dk; i++)
                    for (int j = 0; j < dv; j++) s[i, j] *= decay;
                for (int j = 0; j < dv; j++)
                {
                    double recalled = 0;
                    for (int i = 0; i < dk; i++) recalled += s[i, j] * k[i];
                    double delta = beta * (v[j] - recalled);
                    for (int i = 0; i < dk; i++) s[i, j] += k[i] * delta;
                }
                var o = new double[dv];
                for (int j = 0; j < dv; j++)
                    for (int i = 0; i < dk; i++) o[j] += s[i, j] * q[i];
                double rms = 1 / Math.Sqrt(o.Select(e => e * e).Average() + eps);
                for (int j = 0; j < dv; j++)
                    gated[hv * dv + j] = o[j] * rms * normW[j] * Reference.Silu(z[t][hv * dv + j]);
            }
            output[t] = Reference.MatVec(outW, gated);
        }
        return output;
    }
}
