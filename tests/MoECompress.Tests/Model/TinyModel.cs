using System.Text.Json.Nodes;
using MoECompress.Compression.Model;
using MoECompress.Formats.Families;
using MoECompress.Formats.Synthetic;
using TorchSharp;
using static TorchSharp.torch;

namespace MoECompress.Tests.Model;

/// <summary>
/// A tiny random model of a real family, built in memory: the real reference config.json scaled down (hidden 8,
/// 4 experts, vocab 24, ...) and tensors named as the family stores them. Weights come from a seeded
/// <see cref="System.Random"/>, so models are reproducible and independent of torch's global generator.
/// </summary>
internal sealed class TinyModel : IDisposable
{
    public const int Hidden = 8;
    public const int Vocab = 24;

    private TinyModel(string kind, JsonObject config, InMemoryTensorSource source)
    {
        Kind = kind;
        Config = config;
        Source = source;
        (Family, MoE) = FamilyRegistry.Read(config, $"tiny-{kind}/config.json");
    }

    public string Kind { get; }
    public JsonObject Config { get; }
    public InMemoryTensorSource Source { get; }
    public IMoEFamily Family { get; }
    public MoEConfig MoE { get; }

    public ModelEngine Engine() => new(Source, Family, MoE, Config, $"tiny-{Kind}/config.json");

    /// <summary>The reference config each kind is scaled down from.</summary>
    public static readonly IReadOnlyDictionary<string, string> ReferenceOf = new Dictionary<string, string>
    {
        ["mixtral"] = "Mixtral-8x7B-v0.1",
        ["qwen2_moe"] = "Qwen1.5-MoE-A2.7B",
        ["qwen3_moe"] = "Qwen3-30B-A3B",
        ["olmoe"] = "OLMoE-1B-7B-0924",
        ["deepseek_v2"] = "DeepSeek-V2-Lite",
        ["deepseek_v3"] = "DeepSeek-R1",
        ["glm4_moe"] = "GLM-4.5",
        ["gpt_oss"] = "gpt-oss-20b",
        ["phimoe"] = "Phi-3.5-MoE-instruct",
        ["granitemoe"] = "granite-3.0-1b-a400m-base",
        ["granitemoeshared"] = "granite-3.0-1b-a400m-base",
        ["qwen3_next"] = "Qwen3-Next-80B-A3B-Instruct",
        ["qwen3_5_moe"] = "Qwen3.5-18B-REAP-A3B-Coding",
    };

    public static IEnumerable<object[]> Kinds => ReferenceOf.Keys.Select(k => new object[] { k });

    /// <summary>Builds a tiny model. <paramref name="configure"/> may edit the scaled config before tensors are made.</summary>
    public static TinyModel Create(string kind, int layers = 2, int seed = 1, int experts = 4, int topK = 2,
        Action<JsonObject>? configure = null)
    {
        var c = ReferenceConfigs.Load(ReferenceOf[kind]);
        c.Remove("quantization_config");
        c["hidden_size"] = Hidden;
        c["num_hidden_layers"] = layers;
        c["vocab_size"] = Vocab;
        c["max_position_embeddings"] = 64;
        c["num_attention_heads"] = 2;
        c["num_key_value_heads"] = 1;
        c["num_experts_per_tok"] = topK;
        c["rms_norm_eps"] = 1e-5;
        c["tie_word_embeddings"] = false;
        switch (kind)
        {
            case "mixtral":
                c["num_local_experts"] = experts;
                c["intermediate_size"] = 6;
                c["rope_theta"] = 1000.0;
                break;
            case "qwen2_moe":
                c["num_experts"] = experts;
                c["moe_intermediate_size"] = 6;
                c["shared_expert_intermediate_size"] = 5;
                c["intermediate_size"] = 10;
                c["mlp_only_layers"] = layers > 2 ? new JsonArray(1) : new JsonArray();
                c["max_window_layers"] = layers;
                break;
            case "qwen3_moe":
                c["num_experts"] = experts;
                c["moe_intermediate_size"] = 6;
                c["intermediate_size"] = 10;
                c["head_dim"] = 6;
                c["max_window_layers"] = layers;
                break;
            case "olmoe":
                c["num_experts"] = experts;
                c["intermediate_size"] = 6;
                break;
            case "deepseek_v2":
                c["n_routed_experts"] = experts;
                c["moe_intermediate_size"] = 6;
                c["intermediate_size"] = 10;
                c["n_shared_experts"] = 1;
                c["first_k_dense_replace"] = 1;
                c["n_group"] = 2;
                c["topk_group"] = 1;
                c["topk_method"] = "group_limited_greedy";
                c["routed_scaling_factor"] = 2.0;
                c["norm_topk_prob"] = false;
                c["q_lora_rank"] = null;
                c["kv_lora_rank"] = 4;
                c["qk_nope_head_dim"] = 4;
                c["qk_rope_head_dim"] = 2;
                c["v_head_dim"] = 3;
                c["num_key_value_heads"] = 2;
                c["rope_scaling"] = new JsonObject
                {
                    ["type"] = "yarn", ["factor"] = 4.0, ["original_max_position_embeddings"] = 16,
                    ["beta_fast"] = 32, ["beta_slow"] = 1, ["mscale"] = 0.707, ["mscale_all_dim"] = 0.707,
                };
                break;
            case "deepseek_v3":
                c["n_routed_experts"] = experts;
                c["moe_intermediate_size"] = 6;
                c["intermediate_size"] = 10;
                c["n_shared_experts"] = 1;
                c["first_k_dense_replace"] = 1;
                c["n_group"] = 2;
                c["topk_group"] = 1;
                c["routed_scaling_factor"] = 2.5;
                c["q_lora_rank"] = 5;
                c["kv_lora_rank"] = 4;
                c["qk_nope_head_dim"] = 4;
                c["qk_rope_head_dim"] = 4;
                c["v_head_dim"] = 3;
                c["num_key_value_heads"] = 2;
                c["num_nextn_predict_layers"] = 0;
                c["rope_scaling"] = new JsonObject
                {
                    ["type"] = "yarn", ["factor"] = 4.0, ["original_max_position_embeddings"] = 16,
                    ["beta_fast"] = 32, ["beta_slow"] = 1, ["mscale"] = 1.0, ["mscale_all_dim"] = 0.8,
                };
                break;
            case "glm4_moe":
                // Group-limited (2 groups, 1 kept), partial rotary (2 of 4 head dimensions), q/k norms, q/k/v biases.
                c["n_routed_experts"] = experts;
                c["moe_intermediate_size"] = 6;
                c["intermediate_size"] = 10;
                c["n_shared_experts"] = 1;
                c["first_k_dense_replace"] = 1;
                c["n_group"] = 2;
                c["topk_group"] = 1;
                c["routed_scaling_factor"] = 2.5;
                c["head_dim"] = 4;
                c["partial_rotary_factor"] = 0.5;
                c["rope_theta"] = 100.0;
                c["num_nextn_predict_layers"] = 0;
                break;
            case "gpt_oss":
                // Dequantized (bf16-release) layout; sliding window 3 on even layers; YaRN without truncation.
                c["num_local_experts"] = experts;
                c["experts_per_token"] = topK;
                c["intermediate_size"] = 6;
                c["head_dim"] = 4;
                c["sliding_window"] = 3;
                c["layer_types"] = new JsonArray(Enumerable.Range(0, layers)
                    .Select(l => (JsonNode?)(l % 2 == 0 ? "sliding_attention" : "full_attention")).ToArray());
                c["rope_scaling"] = new JsonObject
                {
                    ["rope_type"] = "yarn", ["factor"] = 4.0, ["original_max_position_embeddings"] = 16,
                    ["beta_fast"] = 32.0, ["beta_slow"] = 1.0, ["truncate"] = false,
                };
                break;
            case "phimoe":
                // LayerNorm with biases, biases on q/k/v/o and lm_head, sliding window 3, LongRoPE with Phi's mscales
                // (original context 8: longer sequences take the long factors), sparsemixer with a wide jitter band
                // so that the masked softmax often keeps more than one logit.
                c["num_local_experts"] = experts;
                c["intermediate_size"] = 6;
                c["sliding_window"] = 3;
                c["router_jitter_noise"] = 0.3;
                c["original_max_position_embeddings"] = 8;
                c["rope_scaling"] = new JsonObject
                {
                    ["type"] = "longrope", ["short_factor"] = new JsonArray(1.0, 1.5), ["long_factor"] = new JsonArray(2.0, 5.0),
                    ["short_mscale"] = 1.1, ["long_mscale"] = 1.3, ["original_max_position_embeddings"] = 8,
                };
                break;
            case "granitemoe" or "granitemoeshared":
                // muP multipliers far from 1, tied embeddings; the shared kind adds GraniteMoeShared's shared_mlp.
                c["num_local_experts"] = experts;
                c["intermediate_size"] = 6;
                c["tie_word_embeddings"] = true;
                c["embedding_multiplier"] = 2.5;
                c["attention_multiplier"] = 0.3;
                c["residual_multiplier"] = 0.6;
                c["logits_scaling"] = 1.7;
                if (kind == "granitemoeshared")
                {
                    c["architectures"] = new JsonArray("GraniteMoeSharedForCausalLM");
                    c["model_type"] = "granitemoeshared";
                    c["shared_intermediate_size"] = 5;
                }
                break;
            case "qwen3_next":
            case "qwen3_5_moe":
                // Hybrid: Gated DeltaNet with 2 key heads of 3 and 4 value heads of 2 (2 per key head), conv kernel 3;
                // gated full attention with partial rotary (2 of 4 head dimensions). Qwen3-Next: every 2nd layer full
                // (full_attention_interval); Qwen3.5 REAP: layer_types, tensors under model.language_model.
                c["num_experts"] = experts;
                c["moe_intermediate_size"] = 6;
                c["shared_expert_intermediate_size"] = 5;
                c["head_dim"] = 4;
                c["partial_rotary_factor"] = 0.5;
                c["linear_num_key_heads"] = 2;
                c["linear_num_value_heads"] = 4;
                c["linear_key_head_dim"] = 3;
                c["linear_value_head_dim"] = 2;
                c["linear_conv_kernel_dim"] = 3;
                if (kind == "qwen3_next")
                {
                    c["rope_theta"] = 100.0;
                    c["full_attention_interval"] = 2;
                }
                else
                {
                    c["rope_parameters"]!["rope_theta"] = 100.0;
                    c["rope_parameters"]!["partial_rotary_factor"] = 0.5;
                    c["rope_parameters"]!["mrope_section"] = new JsonArray(1);
                    c["layer_types"] = new JsonArray(Enumerable.Range(0, layers)
                        .Select(l => (JsonNode?)(l % 3 == 1 ? "full_attention" : "linear_attention")).ToArray());
                    c["mtp_num_hidden_layers"] = 0;
                }
                break;
            default:
                throw new ArgumentException($"unknown tiny model kind '{kind}'");
        }
        configure?.Invoke(c);
        var model = new TinyModel(kind, c, new InMemoryTensorSource());
        model.FillWeights(new Random(seed));
        return model;
    }

    private void FillWeights(Random rng)
    {
        using var scope = NewDisposeScope();
        var c = Config;
        var moe = MoE;
        int h = Hidden, heads = c["num_attention_heads"]!.GetValue<int>(), kv = c["num_key_value_heads"]!.GetValue<int>();
        int headDim = c["head_dim"]?.GetValue<int>() ?? h / heads;
        var src = Source;
        var hybrid = Kind is "qwen3_next" or "qwen3_5_moe";
        // Qwen3-Next's zero-centred norms store the offset from 1.
        Tensor Norm(Random r, long size) => hybrid ? Randn(r, 0.1, size) : NormNearOne(r, size);
        var prefix = MoE.ModelPrefix;
        src.Set(prefix + "embed_tokens.weight", Randn(rng, 1.0, Vocab, h));
        src.Set(prefix + "norm.weight", Norm(rng, h));
        if (!moe.TieWordEmbeddings) src.Set("lm_head.weight", Randn(rng, 0.5, Vocab, h));
        var phi = Kind == "phimoe";
        if (phi)
        {
            src.Set(prefix + "norm.bias", Randn(rng, 0.1, h));
            src.Set("lm_head.bias", Randn(rng, 0.3, Vocab));
        }
        for (var l = 0; l < moe.NumLayers; l++)
        {
            var p = $"{prefix}layers.{l}.";
            src.Set(p + "input_layernorm.weight", Norm(rng, h));
            src.Set(p + "post_attention_layernorm.weight", Norm(rng, h));
            if (phi)
            {
                src.Set(p + "input_layernorm.bias", Randn(rng, 0.1, h));
                src.Set(p + "post_attention_layernorm.bias", Randn(rng, 0.1, h));
            }
            if (hybrid && IsLinearAttention(l))
                FillGatedDeltaNet(rng, p + "linear_attn.");
            else if (Kind.StartsWith("deepseek_v", StringComparison.Ordinal))
            {
                int nope = c["qk_nope_head_dim"]!.GetValue<int>(), rope = c["qk_rope_head_dim"]!.GetValue<int>();
                int v = c["v_head_dim"]!.GetValue<int>(), kvRank = c["kv_lora_rank"]!.GetValue<int>();
                var qRank = c["q_lora_rank"]?.GetValue<int>();
                if (qRank is { } r)
                {
                    src.Set(p + "self_attn.q_a_proj.weight", Randn(rng, 0.5, r, h));
                    src.Set(p + "self_attn.q_a_layernorm.weight", Norm(rng, r));
                    src.Set(p + "self_attn.q_b_proj.weight", Randn(rng, 0.5, heads * (nope + rope), r));
                }
                else
                    src.Set(p + "self_attn.q_proj.weight", Randn(rng, 0.5, heads * (nope + rope), h));
                src.Set(p + "self_attn.kv_a_proj_with_mqa.weight", Randn(rng, 0.5, kvRank + rope, h));
                src.Set(p + "self_attn.kv_a_layernorm.weight", Norm(rng, kvRank));
                src.Set(p + "self_attn.kv_b_proj.weight", Randn(rng, 0.5, heads * (nope + v), kvRank));
                src.Set(p + "self_attn.o_proj.weight", Randn(rng, 0.5, h, heads * v));
            }
            else
            {
                src.Set(p + "self_attn.q_proj.weight", Randn(rng, 0.5, heads * headDim * (hybrid ? 2 : 1), h));
                src.Set(p + "self_attn.k_proj.weight", Randn(rng, 0.5, kv * headDim, h));
                src.Set(p + "self_attn.v_proj.weight", Randn(rng, 0.5, kv * headDim, h));
                src.Set(p + "self_attn.o_proj.weight", Randn(rng, 0.5, h, heads * headDim));
                if (Kind is "gpt_oss" or "phimoe")
                    src.Set(p + "self_attn.o_proj.bias", Randn(rng, 0.2, h));
                if (Kind == "gpt_oss")
                {
                    src.Set(p + "self_attn.sinks", Randn(rng, 1.0, heads));
                }
                if (Kind is "qwen2_moe" or "glm4_moe" or "gpt_oss" or "phimoe")
                {
                    src.Set(p + "self_attn.q_proj.bias", Randn(rng, 0.2, heads * headDim));
                    src.Set(p + "self_attn.k_proj.bias", Randn(rng, 0.2, kv * headDim));
                    src.Set(p + "self_attn.v_proj.bias", Randn(rng, 0.2, kv * headDim));
                }
                if (Kind is "qwen3_moe" or "glm4_moe" || hybrid)
                {
                    src.Set(p + "self_attn.q_norm.weight", Norm(rng, headDim));
                    src.Set(p + "self_attn.k_norm.weight", Norm(rng, headDim));
                }
                if (Kind == "olmoe")
                {
                    src.Set(p + "self_attn.q_norm.weight", Norm(rng, heads * headDim));
                    src.Set(p + "self_attn.k_norm.weight", Norm(rng, kv * headDim));
                }
            }

            if (!moe.IsMoELayer[l])
            {
                var inter = moe.DenseIntermediateSize;
                src.Set(p + "mlp.gate_proj.weight", Randn(rng, 0.5, inter, h));
                src.Set(p + "mlp.up_proj.weight", Randn(rng, 0.5, inter, h));
                src.Set(p + "mlp.down_proj.weight", Randn(rng, 0.5, h, inter));
                continue;
            }
            if (Kind == "gpt_oss")
            {
                // Fused and transposed: gate_up_proj [E, H, 2I] with gate/up interleaved, down_proj [E, I, H], biases.
                long e = moe.NumExperts, i = moe.ExpertIntermediateSize;
                src.Set(p + "mlp.router.weight", Randn(rng, 1.0, e, h));
                src.Set(p + "mlp.router.bias", Randn(rng, 0.5, e));
                src.Set(p + "mlp.experts.gate_up_proj", Randn(rng, 0.7, e, h, 2 * i));
                src.Set(p + "mlp.experts.gate_up_proj_bias", Randn(rng, 0.5, e, 2 * i));
                src.Set(p + "mlp.experts.down_proj", Randn(rng, 0.5, e, i, h));
                src.Set(p + "mlp.experts.down_proj_bias", Randn(rng, 0.2, e, h));
                continue;
            }
            if (Kind.StartsWith("granitemoe", StringComparison.Ordinal))
            {
                // Fused: input_linear [E, 2I, H] (gate rows, then up rows), output_linear [E, H, I]; router.layer.
                long e = moe.NumExperts, i = moe.ExpertIntermediateSize;
                src.Set(p + "block_sparse_moe.router.layer.weight", Randn(rng, 1.0, e, h));
                src.Set(p + "block_sparse_moe.input_linear.weight", Randn(rng, 0.5, e, 2 * i, h));
                src.Set(p + "block_sparse_moe.output_linear.weight", Randn(rng, 0.5, e, h, i));
                if (moe.SharedExpertIntermediateSize is > 0 and var si)
                {
                    src.Set(p + "shared_mlp.input_linear.weight", Randn(rng, 0.5, 2 * si, h));
                    src.Set(p + "shared_mlp.output_linear.weight", Randn(rng, 0.5, h, si));
                }
                continue;
            }
            var mixtralNames = Kind is "mixtral" or "phimoe";
            var block = mixtralNames ? p + "block_sparse_moe." : p + "mlp.";
            var (g, u, d) = mixtralNames ? ("w1", "w3", "w2") : ("gate_proj", "up_proj", "down_proj");
            src.Set(block + "gate.weight", Randn(rng, 1.0, moe.NumExperts, h));
            if (moe.HasCorrectionBias) src.Set(block + "gate.e_score_correction_bias", Randn(rng, 0.1, moe.NumExperts));
            var ei = moe.ExpertIntermediateSize;
            for (var e = 0; e < moe.NumExperts; e++)
            {
                src.Set($"{block}experts.{e}.{g}.weight", Randn(rng, 0.5, ei, h));
                src.Set($"{block}experts.{e}.{u}.weight", Randn(rng, 0.5, ei, h));
                src.Set($"{block}experts.{e}.{d}.weight", Randn(rng, 0.5, h, ei));
            }
            if (moe.SharedExpertIntermediateSize > 0)
            {
                var sp = Kind is "qwen2_moe" || hybrid ? p + "mlp.shared_expert." : p + "mlp.shared_experts.";
                var si = moe.SharedExpertIntermediateSize;
                src.Set(sp + "gate_proj.weight", Randn(rng, 0.5, si, h));
                src.Set(sp + "up_proj.weight", Randn(rng, 0.5, si, h));
                src.Set(sp + "down_proj.weight", Randn(rng, 0.5, h, si));
                if (moe.HasSharedExpertGate) src.Set(p + "mlp.shared_expert_gate.weight", Randn(rng, 0.5, 1, h));
            }
        }
    }

    /// <summary>Replaces the weights of a routed expert with fresh random values.</summary>
    public void PerturbExpert(int layer, int expert, int seed)
    {
        using var scope = NewDisposeScope();
        var rng = new Random(seed);
        foreach (var r in new[] { ExpertProjection.Gate, ExpertProjection.Down }.Select(p => Family.ExpertTensor(layer, expert, p, MoE)))
        {
            var current = Source.Get(r.TensorName);
            if (r.FusedIndex is { } e)
            {
                // Fused tensors hold every expert: replace only this expert's slab (gate and up share it).
                var changed = current.clone();
                changed[e] = Randn(rng, 0.7, current.shape[1..]);
                Source.Set(r.TensorName, changed);
            }
            else Source.Set(r.TensorName, Randn(rng, 0.7, current.shape));
        }
        if (Family.ExpertTensor(layer, expert, ExpertProjection.Up, MoE) is { FusedIndex: null } up)
            Source.Set(up.TensorName, Randn(rng, 0.7, Source.Get(up.TensorName).shape));
    }

    public static Tensor Randn(Random rng, double scale, params long[] shape)
    {
        var n = shape.Aggregate(1L, (a, b) => a * b);
        var values = new float[n];
        for (var i = 0; i < n; i++)
        {
            var u1 = 1.0 - rng.NextDouble();
            var u2 = rng.NextDouble();
            values[i] = (float)(scale * Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
        }
        return tensor(values, shape);
    }

    /// <summary>True when decoder layer <paramref name="layer"/> of a hybrid kind is Gated DeltaNet.</summary>
    public bool IsLinearAttention(int layer) => Config["layer_types"] is JsonArray types
        ? types[layer]!.GetValue<string>() == "linear_attention"
        : (layer + 1) % Config["full_attention_interval"]!.GetValue<int>() != 0;

    /// <summary>linear_attn.* as the kind stores it: Qwen3-Next fused in_proj_qkvz / in_proj_ba, Qwen3.5 split projections.</summary>
    private void FillGatedDeltaNet(Random rng, string p)
    {
        var c = Config;
        int h = Hidden, nk = c["linear_num_key_heads"]!.GetValue<int>(), nv = c["linear_num_value_heads"]!.GetValue<int>();
        int dk = c["linear_key_head_dim"]!.GetValue<int>(), dv = c["linear_value_head_dim"]!.GetValue<int>();
        int kernel = c["linear_conv_kernel_dim"]!.GetValue<int>();
        long conv = 2L * nk * dk + (long)nv * dv;
        if (Kind == "qwen3_next")
        {
            Source.Set(p + "in_proj_qkvz.weight", Randn(rng, 0.5, conv + (long)nv * dv, h));
            Source.Set(p + "in_proj_ba.weight", Randn(rng, 0.5, 2L * nv, h));
        }
        else
        {
            Source.Set(p + "in_proj_qkv.weight", Randn(rng, 0.5, conv, h));
            Source.Set(p + "in_proj_z.weight", Randn(rng, 0.5, (long)nv * dv, h));
            Source.Set(p + "in_proj_b.weight", Randn(rng, 0.5, nv, h));
            Source.Set(p + "in_proj_a.weight", Randn(rng, 0.5, nv, h));
        }
        Source.Set(p + "conv1d.weight", Randn(rng, 0.5, conv, 1, kernel));
        Source.Set(p + "A_log", Randn(rng, 0.5, nv));
        Source.Set(p + "dt_bias", Randn(rng, 0.5, nv));
        Source.Set(p + "norm.weight", NormNearOne(rng, dv));
        Source.Set(p + "out_proj.weight", Randn(rng, 0.5, h, (long)nv * dv));
    }

    private static Tensor NormNearOne(Random rng, long size)
    {
        using var scope = NewDisposeScope();
        return (Randn(rng, 0.1, size) + 1).MoveToOuterDisposeScope();
    }

    /// <summary>Random token ids in [0, Vocab).</summary>
    public static int[] Tokens(int seed, int length)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, length).Select(_ => rng.Next(Vocab)).ToArray();
    }

    public void Dispose() => Source.Dispose();
}
