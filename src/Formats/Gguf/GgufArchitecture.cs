using System.Text.Json.Nodes;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Families;

namespace MoECompress.Formats.Gguf;

/// <summary>
/// How one model family is spelled in GGUF (llama.cpp's gguf-py constants and convert_hf_to_gguf.py): the
/// <c>general.architecture</c> name, the HF ↔ GGUF tensor names of a decoder layer, the stacked expert tensors, and the
/// config.json keys ↔ <c>{arch}.*</c> metadata. Mixtral is <c>llama</c> (its q/k rows are permuted from HF's rotate-half
/// order to ggml's interleaved RoPE order, as the HF converter does); Qwen2-MoE <c>qwen2moe</c>; Qwen3-MoE
/// <c>qwen3moe</c>; OLMoE <c>olmoe</c>; DeepSeek-V2/V3 <c>deepseek2</c> (MLA: kv_b_proj is written split into
/// <c>attn_k_b</c> (transposed per head) and <c>attn_v_b</c>, as current llama.cpp expects).
/// </summary>
public sealed class GgufArchitecture
{
    /// <summary>Metadata key holding the source config.json (moe-compress's own key; llama.cpp ignores it).</summary>
    public const string SourceConfigKey = "moe_compress.hf_config";

    private static readonly (string Hf, string Gguf)[] Common =
    [
        ("input_layernorm.weight", "attn_norm.weight"),
        ("post_attention_layernorm.weight", "ffn_norm.weight"),
        ("self_attn.o_proj.weight", "attn_output.weight"),
    ];
    private static readonly (string Hf, string Gguf)[] Qkv =
    [
        ("self_attn.q_proj.weight", "attn_q.weight"), ("self_attn.k_proj.weight", "attn_k.weight"), ("self_attn.v_proj.weight", "attn_v.weight"),
    ];
    private static readonly (string Hf, string Gguf)[] QkNorm =
        [("self_attn.q_norm.weight", "attn_q_norm.weight"), ("self_attn.k_norm.weight", "attn_k_norm.weight")];

    /// <summary>"llama", "qwen2moe", "qwen3moe", "olmoe" or "deepseek2".</summary>
    public string Name { get; }
    /// <summary>Per-layer tensors: name after <c>model.layers.{L}.</c> ↔ name after <c>blk.{L}.</c>.</summary>
    public IReadOnlyList<(string Hf, string Gguf)> LayerTensors { get; }
    /// <summary>True when q/k rows are permuted for ggml's interleaved RoPE (llama).</summary>
    public bool PermutesQk => Name == "llama";
    /// <summary>True for MLA attention whose kv_b_proj is split into attn_k_b / attn_v_b.</summary>
    public bool SplitsKvB => Name == "deepseek2";

    private readonly string _expertPrefix;
    private readonly string[] _expertNames;

    private GgufArchitecture(string name, IEnumerable<(string, string)> layerTensors, string expertPrefix, string[] expertNames)
    {
        Name = name;
        LayerTensors = layerTensors.ToList();
        _expertPrefix = expertPrefix;
        _expertNames = expertNames;
    }

    /// <summary>Architectures that can be written, by family name.</summary>
    public static IReadOnlyList<string> SupportedFamilies { get; } = ["mixtral", "qwen2-moe", "qwen3-moe", "olmoe", "deepseek-v2", "deepseek-v3"];

    /// <summary>The GGUF spelling of <paramref name="family"/>; InvalidConfig for other families.</summary>
    public static GgufArchitecture ForFamily(string family, string where) => family switch
    {
        "mixtral" => ByName("llama"),
        "qwen2-moe" => ByName("qwen2moe"),
        "qwen3-moe" => ByName("qwen3moe"),
        "olmoe" => ByName("olmoe"),
        "deepseek-v2" or "deepseek-v3" => ByName("deepseek2"),
        _ => throw new MoeCompressException(ErrorKind.InvalidConfig,
            $"{where}: GGUF export supports the {string.Join(", ", SupportedFamilies)} families, not '{family}' (its llama.cpp keys are not mapped yet)"),
    };

    /// <summary>The architecture of a <c>general.architecture</c> value; InvalidConfig for others.</summary>
    public static GgufArchitecture ByName(string arch, string? where = null)
    {
        string[] hfExperts = ["gate_proj", "up_proj", "down_proj"];
        return arch switch
        {
            "llama" => new("llama", [.. Common, .. Qkv, ("block_sparse_moe.gate.weight", "ffn_gate_inp.weight")],
                "block_sparse_moe.experts", ["w1", "w3", "w2"]),
            "qwen2moe" => new("qwen2moe",
                [.. Common, .. Qkv, ("self_attn.q_proj.bias", "attn_q.bias"), ("self_attn.k_proj.bias", "attn_k.bias"), ("self_attn.v_proj.bias", "attn_v.bias"),
                 ("mlp.gate.weight", "ffn_gate_inp.weight"), ("mlp.shared_expert.gate_proj.weight", "ffn_gate_shexp.weight"),
                 ("mlp.shared_expert.up_proj.weight", "ffn_up_shexp.weight"), ("mlp.shared_expert.down_proj.weight", "ffn_down_shexp.weight"),
                 ("mlp.shared_expert_gate.weight", "ffn_gate_inp_shexp.weight")], "mlp.experts", hfExperts),
            "qwen3moe" or "olmoe" => new(arch, [.. Common, .. Qkv, .. QkNorm, ("mlp.gate.weight", "ffn_gate_inp.weight")], "mlp.experts", hfExperts),
            "deepseek2" => new("deepseek2",
                [.. Common, ("self_attn.q_proj.weight", "attn_q.weight"), ("self_attn.q_a_proj.weight", "attn_q_a.weight"),
                 ("self_attn.q_a_layernorm.weight", "attn_q_a_norm.weight"), ("self_attn.q_b_proj.weight", "attn_q_b.weight"),
                 ("self_attn.kv_a_proj_with_mqa.weight", "attn_kv_a_mqa.weight"), ("self_attn.kv_a_layernorm.weight", "attn_kv_a_norm.weight"),
                 ("mlp.gate.weight", "ffn_gate_inp.weight"), ("mlp.gate.e_score_correction_bias", "exp_probs_b.bias"),
                 ("mlp.shared_experts.gate_proj.weight", "ffn_gate_shexp.weight"), ("mlp.shared_experts.up_proj.weight", "ffn_up_shexp.weight"),
                 ("mlp.shared_experts.down_proj.weight", "ffn_down_shexp.weight"),
                 ("mlp.gate_proj.weight", "ffn_gate.weight"), ("mlp.up_proj.weight", "ffn_up.weight"), ("mlp.down_proj.weight", "ffn_down.weight")],
                "mlp.experts", hfExperts),
            _ => throw new MoeCompressException(ErrorKind.InvalidConfig,
                $"{where ?? "GGUF"}: general.architecture '{arch}' is not read here (llama, qwen2moe, qwen3moe, olmoe, deepseek2)"),
        };
    }

    /// <summary>Name of the stacked expert tensor of a projection: <c>blk.{L}.ffn_gate_exps.weight</c>.</summary>
    public static string StackedExpertName(int layer, ExpertProjection projection) => projection switch
    {
        ExpertProjection.Gate => $"blk.{layer}.ffn_gate_exps.weight",
        ExpertProjection.Up => $"blk.{layer}.ffn_up_exps.weight",
        ExpertProjection.Down => $"blk.{layer}.ffn_down_exps.weight",
        _ => throw new ArgumentOutOfRangeException(nameof(projection), projection, "gate, up or down"),
    };

    /// <summary>The HF per-expert tensor name the reader presents (<c>model.layers.{L}.mlp.experts.{E}.gate_proj.weight</c>).</summary>
    public string ExpertHfName(int layer, int expert, ExpertProjection projection) =>
        $"model.layers.{layer}.{_expertPrefix}.{expert}.{_expertNames[(int)projection]}.weight";

    /// <summary>Global tensors: HF name ↔ GGUF name.</summary>
    public static IReadOnlyList<(string Hf, string Gguf)> GlobalTensors { get; } =
        [("model.embed_tokens.weight", "token_embd.weight"), ("model.norm.weight", "output_norm.weight"), ("lm_head.weight", "output.weight")];

    /// <summary>The GGUF name of a non-expert HF tensor, or null when it has none.</summary>
    public string? GgufNameOf(string hfName)
    {
        foreach (var (hf, g) in GlobalTensors)
            if (hf == hfName) return g;
        if (!hfName.StartsWith("model.layers.", StringComparison.Ordinal)) return null;
        var rest = hfName["model.layers.".Length..];
        var dot = rest.IndexOf('.');
        if (dot <= 0 || !int.TryParse(rest[..dot], out var layer)) return null;
        var suffix = rest[(dot + 1)..];
        foreach (var (hf, g) in LayerTensors)
            if (hf == suffix) return $"blk.{layer}.{g}";
        return null;
    }

    /// <summary>The HF name of a non-expert GGUF tensor, or null.</summary>
    public string? HfNameOf(string ggufName)
    {
        foreach (var (hf, g) in GlobalTensors)
            if (g == ggufName) return hf;
        if (!ggufName.StartsWith("blk.", StringComparison.Ordinal)) return null;
        var rest = ggufName[4..];
        var dot = rest.IndexOf('.');
        if (dot <= 0 || !int.TryParse(rest[..dot], out var layer)) return null;
        var suffix = rest[(dot + 1)..];
        foreach (var (hf, g) in LayerTensors)
            if (g == suffix) return $"model.layers.{layer}.{hf}";
        return null;
    }

    /// <summary>
    /// Rows of a q/k projection [heads·d, in] reordered from HF's rotate-half RoPE layout to ggml's interleaved one
    /// (convert_hf_to_gguf's permute: view [heads, 2, d/2, in], swap axes 1 and 2), or back with <paramref name="inverse"/>.
    /// </summary>
    public static float[] PermuteRows(ReadOnlySpan<float> w, int heads, int rowsTotal, int columns, bool inverse)
    {
        var half = rowsTotal / heads / 2;
        var result = new float[w.Length];
        for (var h = 0; h < heads; h++)
            for (var two = 0; two < 2; two++)
                for (var i = 0; i < half; i++)
                {
                    var hfRow = h * 2 * half + two * half + i;
                    var ggRow = h * 2 * half + i * 2 + two;
                    var (from, to) = inverse ? (ggRow, hfRow) : (hfRow, ggRow);
                    w.Slice(from * columns, columns).CopyTo(result.AsSpan(to * columns, columns));
                }
        return result;
    }

    // ------------------------------------------------------------------ config ↔ metadata

    /// <summary>The <c>{arch}.*</c> hyper-parameter keys for <paramref name="config"/> (counts UINT32, scales FLOAT32).</summary>
    public List<KeyValuePair<string, GgufValue>> Metadata(JsonObject config, MoEConfig moe, string configPath)
    {
        var r = new ConfigReader(config, configPath);
        var kv = new List<KeyValuePair<string, GgufValue>>();
        void U(string key, long v) => kv.Add(new($"{Name}.{key}", GgufValue.U32(checked((uint)v))));
        void F(string key, double v) => kv.Add(new($"{Name}.{key}", GgufValue.F32((float)v)));
        var hidden = r.Int("hidden_size");
        var heads = r.Int("num_attention_heads");
        U("context_length", r.Int("max_position_embeddings", 4096));
        U("embedding_length", hidden);
        U("block_count", moe.NumLayers);
        U("attention.head_count", heads);
        F("attention.layer_norm_rms_epsilon", r.Double("rms_norm_eps", 1e-6));
        F("rope.freq_base", r.Double("rope_theta", 10000));
        U("expert_count", moe.NumExperts);
        U("expert_used_count", moe.TopK);
        U("vocab_size", moe.VocabSize);
        var headDim = r.Int("head_dim", hidden / heads);
        switch (Name)
        {
            case "llama":
                U("attention.head_count_kv", r.Int("num_key_value_heads", heads));
                U("feed_forward_length", moe.ExpertIntermediateSize);
                U("rope.dimension_count", headDim);
                if (headDim * heads != hidden) { U("attention.key_length", headDim); U("attention.value_length", headDim); }
                break;
            case "qwen2moe":
            case "qwen3moe":
                if (moe.IsMoELayer.Any(m => !m))
                    throw new MoeCompressException(ErrorKind.InvalidConfig,
                        $"{configPath}: {Name} in llama.cpp has a MoE block in every layer; this config has dense layers (decoder_sparse_step / mlp_only_layers)");
                U("attention.head_count_kv", r.Int("num_key_value_heads", heads));
                U("feed_forward_length", r.Int("intermediate_size", moe.ExpertIntermediateSize));
                U("expert_feed_forward_length", moe.ExpertIntermediateSize);
                U("attention.key_length", headDim);
                U("attention.value_length", headDim);
                if (Name == "qwen2moe") U("expert_shared_feed_forward_length", moe.SharedExpertIntermediateSize);
                break;
            case "olmoe":
                U("attention.head_count_kv", r.Int("num_key_value_heads", heads));
                U("feed_forward_length", moe.ExpertIntermediateSize);
                break;
            case "deepseek2":
            {
                var rope = r.Int("qk_rope_head_dim");
                var nope = r.Int("qk_nope_head_dim");
                var kvRank = r.Int("kv_lora_rank");
                U("attention.head_count_kv", 1);
                U("leading_dense_block_count", moe.IsMoELayer.TakeWhile(m => !m).Count());
                U("feed_forward_length", r.Int("intermediate_size", moe.ExpertIntermediateSize));
                U("expert_feed_forward_length", moe.ExpertIntermediateSize);
                U("expert_shared_count", moe.NumSharedExperts);
                F("expert_weights_scale", moe.RoutedScalingFactor);
                kv.Add(new($"{Name}.expert_weights_norm", GgufValue.Bool(moe.NormTopKProb)));
                U("expert_gating_func", moe.Scoring == RouterScoring.Sigmoid ? 2 : 1);
                U("expert_group_count", moe.NumGroups);
                U("expert_group_used_count", moe.TopKGroups);
                if (config["q_lora_rank"] is JsonValue q && q.TryGetValue<int>(out var qRank)) U("attention.q_lora_rank", qRank);
                U("attention.kv_lora_rank", kvRank);
                U("attention.key_length", kvRank + rope);
                U("attention.value_length", kvRank);
                U("attention.key_length_mla", nope + rope);
                U("attention.value_length_mla", r.Int("v_head_dim"));
                U("rope.dimension_count", rope);
                if (config["rope_scaling"] is JsonObject rs && (rs["type"] ?? rs["rope_type"])?.GetValue<string>() == "yarn")
                {
                    kv.Add(new($"{Name}.rope.scaling.type", GgufValue.Str("yarn")));
                    F("rope.scaling.factor", rs["factor"]?.GetValue<double>() ?? 1);
                    U("rope.scaling.original_context_length", rs["original_max_position_embeddings"]?.GetValue<int>() ?? 4096);
                    F("rope.scaling.yarn_log_multiplier", 0.1 * (rs["mscale_all_dim"]?.GetValue<double>() ?? 0));
                }
                break;
            }
        }
        return kv;
    }

    /// <summary>
    /// Rebuilds a config.json that the family adapters and the engine read from the <c>{arch}.*</c> keys of
    /// <paramref name="file"/>: the standard keys only, so a GGUF written by other tools reads too (for DeepSeek's YaRN
    /// only factor, original length and mscale_all_dim are carried).
    /// </summary>
    public JsonObject ConfigFrom(GgufFile file)
    {
        int U(string key) => checked((int)file.Require($"{Name}.{key}", GgufValueType.UInt32).AsUInt64());
        int? UOpt(string key) => file.Get($"{Name}.{key}") is { Type: GgufValueType.UInt32 } v ? checked((int)v.AsUInt64()) : null;
        // FLOAT32 values as the shortest decimal that round-trips (1e-05, not 9.99999974e-06).
        double? FOpt(string key) => file.Get($"{Name}.{key}") is { Type: GgufValueType.Float32, Value: float f }
            ? double.Parse(f.ToString("R", System.Globalization.CultureInfo.InvariantCulture), System.Globalization.CultureInfo.InvariantCulture)
            : null;
        var hidden = U("embedding_length");
        var heads = U("attention.head_count");
        var layers = U("block_count");
        var experts = U("expert_count");
        var vocab = UOpt("vocab_size") ?? file.Get("tokenizer.ggml.tokens")?.Count ?? 0;
        if (vocab == 0 && file.Contains("token_embd.weight")) vocab = (int)file.GetTensor("token_embd.weight").Dimensions[1];
        var c = new JsonObject
        {
            ["hidden_size"] = hidden,
            ["num_attention_heads"] = heads,
            ["num_hidden_layers"] = layers,
            ["vocab_size"] = vocab,
            ["max_position_embeddings"] = UOpt("context_length") ?? 4096,
            ["rms_norm_eps"] = FOpt("attention.layer_norm_rms_epsilon") ?? 1e-6,
            ["rope_theta"] = FOpt("rope.freq_base") ?? 10000,
            ["num_experts_per_tok"] = U("expert_used_count"),
            ["hidden_act"] = "silu",
            ["tie_word_embeddings"] = !file.Contains("output.weight"),
            ["torch_dtype"] = "float32",
        };
        var headDim = UOpt("attention.key_length") ?? UOpt("rope.dimension_count") ?? hidden / heads;
        switch (Name)
        {
            case "llama":
                c["architectures"] = new JsonArray("MixtralForCausalLM");
                c["model_type"] = "mixtral";
                c["num_local_experts"] = experts;
                c["intermediate_size"] = U("feed_forward_length");
                c["num_key_value_heads"] = UOpt("attention.head_count_kv") ?? heads;
                c["head_dim"] = headDim;
                break;
            case "qwen2moe":
            case "qwen3moe":
                c["architectures"] = new JsonArray(Name == "qwen2moe" ? "Qwen2MoeForCausalLM" : "Qwen3MoeForCausalLM");
                c["model_type"] = Name == "qwen2moe" ? "qwen2_moe" : "qwen3_moe";
                c["num_experts"] = experts;
                c["moe_intermediate_size"] = U("expert_feed_forward_length");
                c["intermediate_size"] = UOpt("feed_forward_length") ?? U("expert_feed_forward_length");
                c["num_key_value_heads"] = UOpt("attention.head_count_kv") ?? heads;
                c["head_dim"] = headDim;
                c["norm_topk_prob"] = Name == "qwen3moe";
                c["decoder_sparse_step"] = 1;
                if (Name == "qwen2moe") c["shared_expert_intermediate_size"] = UOpt("expert_shared_feed_forward_length") ?? 0;
                break;
            case "olmoe":
                c["architectures"] = new JsonArray("OlmoeForCausalLM");
                c["model_type"] = "olmoe";
                c["num_experts"] = experts;
                c["intermediate_size"] = U("feed_forward_length");
                c["num_key_value_heads"] = UOpt("attention.head_count_kv") ?? heads;
                c["norm_topk_prob"] = false;
                break;
            case "deepseek2":
            {
                var sigmoid = UOpt("expert_gating_func") == 2;
                var rope = U("rope.dimension_count");
                c["architectures"] = new JsonArray(sigmoid ? "DeepseekV3ForCausalLM" : "DeepseekV2ForCausalLM");
                c["model_type"] = sigmoid ? "deepseek_v3" : "deepseek_v2";
                c["n_routed_experts"] = experts;
                c["moe_intermediate_size"] = U("expert_feed_forward_length");
                c["intermediate_size"] = UOpt("feed_forward_length") ?? U("expert_feed_forward_length");
                c["first_k_dense_replace"] = UOpt("leading_dense_block_count") ?? 0;
                c["n_shared_experts"] = UOpt("expert_shared_count") ?? 0;
                c["routed_scaling_factor"] = FOpt("expert_weights_scale") ?? 1.0;
                c["norm_topk_prob"] = file.Get($"{Name}.expert_weights_norm")?.Value is true;
                c["scoring_func"] = sigmoid ? "sigmoid" : "softmax";
                c["topk_method"] = sigmoid ? "noaux_tc" : "greedy";
                c["n_group"] = UOpt("expert_group_count") ?? 1;
                c["topk_group"] = UOpt("expert_group_used_count") ?? 1;
                c["num_key_value_heads"] = heads;
                c["q_lora_rank"] = UOpt("attention.q_lora_rank") is { } q ? q : null;
                c["kv_lora_rank"] = U("attention.kv_lora_rank");
                c["qk_rope_head_dim"] = rope;
                c["qk_nope_head_dim"] = U("attention.key_length_mla") - rope;
                c["v_head_dim"] = U("attention.value_length_mla");
                c["moe_layer_freq"] = 1;
                if (file.Get($"{Name}.rope.scaling.type")?.Value is "yarn")
                    c["rope_scaling"] = new JsonObject
                    {
                        ["type"] = "yarn", ["factor"] = FOpt("rope.scaling.factor") ?? 1,
                        ["original_max_position_embeddings"] = UOpt("rope.scaling.original_context_length") ?? 4096,
                        ["mscale_all_dim"] = (FOpt("rope.scaling.yarn_log_multiplier") ?? 0) / 0.1,
                        ["mscale"] = (FOpt("rope.scaling.yarn_log_multiplier") ?? 0) / 0.1,
                    };
                break;
            }
        }
        return c;
    }
}
