using System.Text.Json.Nodes;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Families;

namespace MoECompress.Compression.Model;

/// <summary>
/// Everything the forward engine needs to know about a model's architecture. The MoE facts (expert counts, top-k,
/// groups, scoring, shared experts, which layers are MoE) come from the family adapter's <see cref="MoEConfig"/>;
/// the attention / norm / RoPE keys are read here from config.json. Build it with <see cref="FromConfig"/>.
/// </summary>
public sealed record EngineConfig
{
    /// <summary>config.json model_type the engine treats the model as ("mixtral", "qwen2_moe", "deepseek_v3", ...).</summary>
    public required string ModelType { get; init; }
    /// <summary>The MoE facts from the family adapter.</summary>
    public required MoEConfig MoE { get; init; }
    public int HiddenSize => MoE.HiddenSize;
    public int VocabSize => MoE.VocabSize;
    public int NumLayers => MoE.NumLayers;

    public required int NumAttentionHeads { get; init; }
    public required int NumKeyValueHeads { get; init; }
    /// <summary>Head dimension of standard attention (unused by MLA, which uses <see cref="Mla"/>).</summary>
    public required int HeadDim { get; init; }
    public required double RmsNormEps { get; init; }
    /// <summary>
    /// Phi-3.5-MoE: the decoder and final norms are LayerNorm with weight and bias (eps <see cref="RmsNormEps"/>)
    /// instead of RMSNorm.
    /// </summary>
    public bool UseLayerNorm { get; init; }
    /// <summary>config.json lm_head_bias (Phi-3.5-MoE): lm_head.bias must exist.</summary>
    public bool LmHeadBias { get; init; }
    /// <summary>GraniteMoE embedding_multiplier: token embeddings are multiplied by it (1 for other models).</summary>
    public double EmbeddingMultiplier { get; init; } = 1.0;
    /// <summary>GraniteMoE residual_multiplier: the attention and MLP outputs are multiplied by it before each residual add.</summary>
    public double ResidualMultiplier { get; init; } = 1.0;
    /// <summary>GraniteMoE logits_scaling: the logits are divided by it.</summary>
    public double LogitsScaling { get; init; } = 1.0;
    /// <summary>Activation of the gated MLPs (silu, gelu, gelu_pytorch_tanh, relu).</summary>
    public required string HiddenAct { get; init; }
    /// <summary>
    /// Activation of the routed experts when it differs from <see cref="HiddenAct"/>: GPT-OSS's clamped SwiGLU
    /// (<see cref="GatedMlp.GptOssSwiglu"/>). Null: the experts use <see cref="HiddenAct"/>.
    /// </summary>
    public string? RoutedExpertActivation { get; init; }
    /// <summary>The activation routed experts run with.</summary>
    public string ExpertActivation => RoutedExpertActivation ?? HiddenAct;
    /// <summary>Intermediate size of dense (non-MoE) MLP layers.</summary>
    public required int DenseIntermediateSize { get; init; }

    public required double RopeTheta { get; init; }
    public required RopeScaling RopeScaling { get; init; }
    public required int MaxPositionEmbeddings { get; init; }
    /// <summary>Rotated dimensions per head (head_dim, or qk_rope_head_dim for MLA).</summary>
    public required int RotaryDim { get; init; }
    /// <summary>DeepSeek interleaved rotary layout (rope_interleave).</summary>
    public bool RopeInterleaved { get; init; }

    /// <summary>Multi-head latent attention dimensions; null for standard grouped-query attention.</summary>
    public MlaSpec? Mla { get; init; }
    /// <summary>Softmax scale of attention: 1/sqrt(head dim), times mscale² for DeepSeek YaRN.</summary>
    public required double AttentionScale { get; init; }
    /// <summary>Sliding attention window (keys with q − k &lt; window are visible) for the layers flagged in <see cref="SlidingWindowLayers"/>.</summary>
    public int? SlidingWindow { get; init; }
    /// <summary>Per decoder layer: true when the layer uses the sliding window.</summary>
    public required IReadOnlyList<bool> SlidingWindowLayers { get; init; }
    /// <summary>OLMoE clip_qkv: q, k and v are clamped to ±this value.</summary>
    public double? ClipQkv { get; init; }
    /// <summary>Gated DeltaNet dimensions of the hybrid models (Qwen3-Next, Qwen3.5/3.6); null when no layer is linear attention.</summary>
    public LinearAttentionSpec? LinearAttention { get; init; }
    /// <summary>Per decoder layer: true when the layer mixes tokens with Gated DeltaNet (linear_attn) instead of self-attention.</summary>
    public IReadOnlyList<bool> LinearAttentionLayers { get; init; } = Array.Empty<bool>();
    /// <summary>True when layer <paramref name="layer"/> is a Gated DeltaNet layer.</summary>
    public bool IsLinearAttentionLayer(int layer) => layer < LinearAttentionLayers.Count && LinearAttentionLayers[layer];
    /// <summary>
    /// Qwen3-Next zero-centred RMSNorm: the decoder's norm weights (input, post-attention, final, q/k norms) are stored
    /// as offsets and the norm multiplies by 1 + weight. The Gated DeltaNet output norm is a plain RMSNorm.
    /// </summary>
    public bool ZeroCenteredNorms { get; init; }
    /// <summary>Qwen3-Next gated attention: q_proj yields a query and a gate per head; the attention output is multiplied by sigmoid(gate).</summary>
    public bool AttentionOutputGate { get; init; }
    /// <summary>Exact routing of every MoE layer.</summary>
    public required RouterSpec Router { get; init; }
    /// <summary>FP8 block size [rows, cols] for weights stored with a <c>weight_scale_inv</c> companion.</summary>
    public IReadOnlyList<int> Fp8BlockSize { get; init; } = new[] { 128, 128 };
    /// <summary>config.json <c>compressed_experts</c> of a substituted checkpoint; null for a plain model.</summary>
    public CompressedExpertsConfig? CompressedExperts { get; init; }

    /// <summary>The rotary embedding this model uses.</summary>
    public RotaryEmbedding CreateRotaryEmbedding() =>
        new(RotaryDim, RopeTheta, RopeScaling, MaxPositionEmbeddings, RopeInterleaved);

    /// <summary>Model types whose forward pass the engine implements.</summary>
    public static IReadOnlyList<string> SupportedModelTypes { get; } =
        new[] { "mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "deepseek", "deepseek_v2", "deepseek_v3", "kimi_k2", "glm4_moe", "gpt_oss",
            "phimoe", "granitemoe", "granitemoeshared", "qwen3_next", "qwen3_5_moe", "qwen3_5_moe_text" };

    /// <summary>Model types that run the forward pass of another one: Kimi K2 is the DeepSeek-V3 architecture.</summary>
    private static readonly Dictionary<string, string> SameArchitectureAs = new()
    {
        ["kimi_k2"] = "deepseek_v3",
        // Qwen3.5/3.6-MoE's language model is Qwen3-Next's (the Gated DeltaNet projections are split differently).
        ["qwen3_5_moe"] = "qwen3_next",
        ["qwen3_5_moe_text"] = "qwen3_next",
    };

    private static readonly Dictionary<string, string> ArchitectureToModelType = new()
    {
        ["MixtralForCausalLM"] = "mixtral",
        ["Qwen2MoeForCausalLM"] = "qwen2_moe",
        ["Qwen3MoeForCausalLM"] = "qwen3_moe",
        ["OlmoeForCausalLM"] = "olmoe",
        ["DeepseekForCausalLM"] = "deepseek",
        ["DeepseekV2ForCausalLM"] = "deepseek_v2",
        ["DeepseekV3ForCausalLM"] = "deepseek_v3",
        ["Glm4MoeForCausalLM"] = "glm4_moe",
        ["GptOssForCausalLM"] = "gpt_oss",
        ["PhiMoEForCausalLM"] = "phimoe",
        ["PhimoeForCausalLM"] = "phimoe",
        ["GraniteMoeForCausalLM"] = "granitemoe",
        ["GraniteMoeSharedForCausalLM"] = "granitemoeshared",
        ["Qwen3NextForCausalLM"] = "qwen3_next",
        ["Qwen3_5MoeForConditionalGeneration"] = "qwen3_5_moe",
        ["Qwen3_5MoeForCausalLM"] = "qwen3_5_moe_text",
    };

    /// <summary>
    /// The model type of a config: model_type, else the first known architectures entry; null when neither is present.
    /// </summary>
    public static string? DetectModelType(JsonObject config)
    {
        if (config.TryGetPropertyValue("model_type", out var mt) && mt is JsonValue v && v.TryGetValue<string>(out var s))
            return s;
        if (config.TryGetPropertyValue("architectures", out var archs) && archs is JsonArray arr)
            foreach (var a in arr)
                if (a is JsonValue av && av.TryGetValue<string>(out var name) && ArchitectureToModelType.TryGetValue(name, out var t))
                    return t;
        return null;
    }

    /// <summary>
    /// Reads the engine configuration. Throws <see cref="MoeCompressException"/>: Infeasible when the model type has no
    /// forward implementation, InvalidConfig naming the key when a needed key is missing or wrong.
    /// </summary>
    /// <param name="config">The parsed config.json.</param>
    /// <param name="moe">The family adapter's MoE facts for the same config.</param>
    /// <param name="configPath">Path shown in error messages.</param>
    public static EngineConfig FromConfig(JsonObject config, MoEConfig moe, string configPath = "config.json")
    {
        var modelType = DetectModelType(config);
        if (modelType is null || !SupportedModelTypes.Contains(modelType))
            throw ModelEngine.NotSupported(moe.Family, modelType);
        modelType = SameArchitectureAs.GetValueOrDefault(modelType, modelType);

        // Multimodal checkpoints (Qwen3.5/3.6 ForConditionalGeneration) keep the language model's keys in text_config.
        var c = config["text_config"] is JsonObject text ? new EngineConfigReader(text, configPath, "text_config.") : new EngineConfigReader(config, configPath);
        var isQwenNext = modelType == "qwen3_next";
        var hidden = moe.HiddenSize;
        var heads = c.RequiredInt("num_attention_heads");
        if (heads <= 0) throw c.Invalid("num_attention_heads", $"must be positive, found {heads}");
        var kvHeads = c.Int("num_key_value_heads") ?? heads;
        if (kvHeads <= 0 || heads % kvHeads != 0)
            throw c.Invalid("num_key_value_heads", $"{kvHeads} must be positive and divide num_attention_heads {heads}");
        var headDim = c.Int("head_dim") ?? (hidden % heads == 0 ? hidden / heads
            : throw c.Invalid("num_attention_heads", $"{heads} does not divide hidden_size {hidden} and head_dim is absent"));
        var eps = c.Double("rms_norm_eps") ?? (modelType == "olmoe" ? 1e-5 : 1e-6);
        var act = c.String("hidden_act") ?? c.String("hidden_activation") ?? "silu";
        if (!GatedMlp.SupportedActivations.Contains(act))
            throw c.Invalid("hidden_act", $"'{act}' is not supported (supported: {string.Join(", ", GatedMlp.SupportedActivations)})");
        // GLM-4.5: only the first head_dim·partial_rotary_factor dimensions of each head are rotated (transformers 5
        // keeps the factor inside rope_parameters).
        var partial = c.Double("partial_rotary_factor")
                      ?? (c.Node("rope_parameters") is JsonObject rpp ? new EngineConfigReader(rpp, configPath, c.KeyPrefix + "rope_parameters.").Double("partial_rotary_factor") : null)
                      ?? (isQwenNext ? 0.25 : 1.0);
        if (partial <= 0 || partial > 1)
            throw c.Invalid("partial_rotary_factor", $"{partial} must be in (0, 1]");

        var scaling = RopeScaling.Parse(c);
        // Phi-3 keeps the pre-training context at the top level; transformers' LongRoPE reads it from there.
        if (scaling.Type == RopeType.LongRope && scaling.OriginalMaxPositionEmbeddings is null && c.Int("original_max_position_embeddings") is { } original)
            scaling = scaling with { OriginalMaxPositionEmbeddings = original };
        var theta = c.Double("rope_theta")
                    ?? (c.Node("rope_parameters") is JsonObject rp ? new EngineConfigReader(rp, configPath, c.KeyPrefix + "rope_parameters.").Double("rope_theta") : null)
                    ?? 10000.0;
        var maxPos = c.Int("max_position_embeddings") ?? 4096;

        MlaSpec? mla = null;
        var isDeepSeekMla = modelType is "deepseek_v2" or "deepseek_v3";
        if (isDeepSeekMla)
        {
            mla = new MlaSpec(
                c.Int("q_lora_rank"),
                c.RequiredInt("kv_lora_rank"),
                c.RequiredInt("qk_nope_head_dim"),
                c.RequiredInt("qk_rope_head_dim"),
                c.RequiredInt("v_head_dim"));
            if (mla.QkRopeHeadDim <= 0 || mla.QkRopeHeadDim % 2 != 0) throw c.Invalid("qk_rope_head_dim", "must be a positive even number");
            if (mla.KvLoraRank <= 0) throw c.Invalid("kv_lora_rank", "must be positive");
            if (mla.QLoraRank is <= 0) throw c.Invalid("q_lora_rank", "must be positive or null");
            if (mla.VHeadDim <= 0 || mla.QkNopeHeadDim < 0) throw c.Invalid("v_head_dim", "MLA head dimensions must be positive");
        }

        var rotaryDim = mla?.QkRopeHeadDim ?? (int)(headDim * partial);
        if (rotaryDim <= 0 || rotaryDim % 2 != 0)
            throw c.Invalid(partial == 1.0 ? "head_dim" : "partial_rotary_factor", $"rotary dimension {rotaryDim} must be a positive even number");
        var scale = 1.0 / Math.Sqrt(mla?.QkHeadDim ?? headDim);
        if (mla is not null && scaling.Type != RopeType.Default && scaling.MscaleAllDim is { } mAll && mAll != 0)
        {
            var factor = scaling.Factor ?? throw c.Invalid("rope_scaling.factor", "is required with mscale_all_dim");
            var m = RotaryEmbedding.YarnMscale(factor, mAll);
            scale *= m * m;
        }

        // GraniteMoE (muP): attention_multiplier replaces 1/sqrt(head_dim) (transformers' default is 1.0), plus the
        // embedding, residual and logits multipliers.
        var isGranite = modelType is "granitemoe" or "granitemoeshared";
        double embeddingMultiplier = 1, residualMultiplier = 1, logitsScaling = 1;
        if (isGranite)
        {
            if (c.String("position_embedding_type") is { } pe && pe != "rope")
                throw c.Invalid("position_embedding_type", $"'{pe}' is not supported by the forward engine (only rope)");
            scale = Finite(c, "attention_multiplier", 1.0);
            embeddingMultiplier = Finite(c, "embedding_multiplier", 1.0);
            residualMultiplier = Finite(c, "residual_multiplier", 1.0);
            logitsScaling = Finite(c, "logits_scaling", 1.0);
            if (logitsScaling == 0) throw c.Invalid("logits_scaling", "must not be zero (the logits are divided by it)");
        }

        var layers = moe.NumLayers;
        var window = c.Int("sliding_window");
        var slidingLayers = new bool[layers];
        if (window is { } w)
        {
            if (w <= 0) throw c.Invalid("sliding_window", $"must be positive, found {w}");
            if (c.Node("layer_types") is JsonArray types)
            {
                if (types.Count < layers) throw c.Invalid("layer_types", $"has {types.Count} entries for {layers} layers");
                for (var i = 0; i < layers; i++)
                    slidingLayers[i] = types[i] is JsonValue tv && tv.TryGetValue<string>(out var ts) && ts == "sliding_attention";
            }
            else if (modelType is "mixtral" or "phimoe")
                Array.Fill(slidingLayers, true);
            else if (modelType is "qwen2_moe" or "qwen3_moe" && c.Bool("use_sliding_window") == true)
            {
                var maxWindowLayers = c.Int("max_window_layers") ?? layers;
                for (var i = maxWindowLayers; i < layers; i++) slidingLayers[i] = true;
            }
        }

        string? expertAct = null;
        if (modelType == "gpt_oss")
        {
            // transformers hard-codes alpha 1.702; the limit is swiglu_limit (7.0 in every release).
            var limit = c.Double("swiglu_limit") ?? GatedMlp.GptOssSwigluLimit;
            if (limit != GatedMlp.GptOssSwigluLimit)
                throw c.Invalid("swiglu_limit", $"{limit} is not supported by the forward engine (only {GatedMlp.GptOssSwigluLimit})");
            expertAct = GatedMlp.GptOssSwiglu;
        }

        var (linear, linearLayers) = isQwenNext ? ReadLinearAttention(c, layers) : (null, Array.Empty<bool>());

        var denseInter = moe.DenseIntermediateSize > 0 ? moe.DenseIntermediateSize : c.Int("intermediate_size") ?? 0;
        var router = BuildRouter(c, modelType, moe);

        IReadOnlyList<int> blockSize = new[] { 128, 128 };
        if (config["quantization_config"] is JsonObject q && q["weight_block_size"] is JsonArray wbs)
        {
            if (wbs.Count != 2) throw c.Invalid("quantization_config.weight_block_size", "must hold two integers");
            var qr = new EngineConfigReader(q, configPath);
            blockSize = wbs.Select((n, i) => qr.ReadInt(n, $"quantization_config.weight_block_size[{i}]") is { } v && v > 0 ? v
                : throw c.Invalid("quantization_config.weight_block_size", "must hold two positive integers")).ToArray();
        }

        return new EngineConfig
        {
            ModelType = modelType,
            MoE = moe,
            NumAttentionHeads = heads,
            NumKeyValueHeads = mla is null ? kvHeads : heads,
            HeadDim = headDim,
            RmsNormEps = eps,
            UseLayerNorm = modelType == "phimoe",
            LmHeadBias = modelType == "phimoe" && c.Bool("lm_head_bias") == true,
            EmbeddingMultiplier = embeddingMultiplier,
            ResidualMultiplier = residualMultiplier,
            LogitsScaling = logitsScaling,
            HiddenAct = act,
            RoutedExpertActivation = expertAct,
            DenseIntermediateSize = denseInter,
            RopeTheta = theta,
            RopeScaling = scaling,
            MaxPositionEmbeddings = maxPos,
            RotaryDim = rotaryDim,
            RopeInterleaved = isDeepSeekMla && (c.Bool("rope_interleave") ?? true),
            Mla = mla,
            AttentionScale = scale,
            SlidingWindow = window,
            SlidingWindowLayers = slidingLayers,
            ClipQkv = c.Double("clip_qkv"),
            LinearAttention = linear,
            LinearAttentionLayers = linearLayers,
            ZeroCenteredNorms = isQwenNext,
            AttentionOutputGate = isQwenNext && (c.Bool("attn_output_gate") ?? true),
            Router = router,
            Fp8BlockSize = blockSize,
            CompressedExperts = CompressedExpertsConfig.Read(config, configPath, moe.TopK),
        };
    }

    private static double Finite(EngineConfigReader c, string key, double fallback) =>
        c.Double(key) is { } v ? (double.IsFinite(v) ? v : throw c.Invalid(key, $"must be a finite number, found {v}")) : fallback;

    /// <summary>
    /// Qwen3-Next / Qwen3.5: which layers are Gated DeltaNet (layer_types "linear_attention", else every layer but each
    /// full_attention_interval-th, as transformers derives it) and the DeltaNet dimensions.
    /// </summary>
    private static (LinearAttentionSpec?, bool[]) ReadLinearAttention(EngineConfigReader c, int layers)
    {
        var linearLayers = new bool[layers];
        if (c.Node("layer_types") is JsonArray types)
        {
            if (types.Count < layers) throw c.Invalid("layer_types", $"has {types.Count} entries for {layers} layers");
            for (var i = 0; i < layers; i++)
            {
                var type = types[i] is JsonValue tv && tv.TryGetValue<string>(out var ts) ? ts : null;
                linearLayers[i] = type switch
                {
                    "linear_attention" => true,
                    "full_attention" => false,
                    _ => throw c.Invalid($"layer_types[{i}]", $"'{type}' is neither linear_attention nor full_attention"),
                };
            }
        }
        else
        {
            var interval = c.Int("full_attention_interval") ?? 4;
            if (interval < 1) throw c.Invalid("full_attention_interval", $"must be at least 1, found {interval}");
            for (var i = 0; i < layers; i++) linearLayers[i] = (i + 1) % interval != 0;
        }
        if (!linearLayers.Contains(true)) return (null, linearLayers);

        int Positive(string key, int? fallback = null)
        {
            var v = c.Int(key) ?? fallback ?? throw c.Invalid(key, "is missing but some layers are linear_attention");
            return v > 0 ? v : throw c.Invalid(key, $"must be positive, found {v}");
        }
        var spec = new LinearAttentionSpec(Positive("linear_num_key_heads"), Positive("linear_num_value_heads"),
            Positive("linear_key_head_dim"), Positive("linear_value_head_dim"), Positive("linear_conv_kernel_dim", 4));
        if (spec.NumValueHeads % spec.NumKeyHeads != 0)
            throw c.Invalid("linear_num_value_heads", $"{spec.NumValueHeads} is not a multiple of linear_num_key_heads {spec.NumKeyHeads}");
        return (spec, linearLayers);
    }

    private static RouterSpec BuildRouter(EngineConfigReader c, string modelType, MoEConfig moe)
    {
        var isDeepSeek = modelType is "deepseek" or "deepseek_v2" or "deepseek_v3" or "glm4_moe";
        RouterSpec spec;
        if (modelType == "phimoe")
        {
            // sparsemixer at inference: two rounds of "best remaining logit, softmax over the logits within
            // 2·router_jitter_noise (relative) of it"; transformers implements it for top-2 only.
            if (moe.TopK != 2)
                throw c.Invalid("num_experts_per_tok", $"{moe.TopK} is not supported: Phi-MoE sparsemixer routing picks exactly 2 experts");
            var jitter = c.Double("router_jitter_noise") ?? 0.01;
            if (jitter < 0 || !double.IsFinite(jitter)) throw c.Invalid("router_jitter_noise", $"{jitter} must be a finite non-negative number");
            spec = new RouterSpec
            {
                NumExperts = moe.NumExperts,
                TopK = moe.TopK,
                Scoring = RouterScoring.Softmax,
                Normalize = false,
                SparseMixerJitterEps = jitter,
            };
        }
        else if (!isDeepSeek)
        {
            spec = new RouterSpec
            {
                NumExperts = moe.NumExperts,
                TopK = moe.TopK,
                Scoring = moe.Scoring,
                // Mixtral always renormalises the top-k softmax weights; Qwen-MoE and OLMoE only when norm_topk_prob.
                Normalize = modelType == "mixtral" || moe.NormTopKProb,
                ScalingFactor = 1.0,
            };
        }
        else
        {
            // GLM-4.5 has no topk_method key: transformers routes it exactly as DeepSeek-V3's noaux_tc.
            var method = modelType == "glm4_moe" ? "noaux_tc" : c.String("topk_method") ?? (modelType == "deepseek_v3" ? "noaux_tc" : "greedy");
            var grouped = moe.NumGroups > 1;
            var selection = method switch
            {
                "greedy" or "gready" => RouterGroupSelection.None,
                "group_limited_greedy" => grouped ? RouterGroupSelection.MaxPerGroup : RouterGroupSelection.None,
                "noaux_tc" => grouped ? RouterGroupSelection.SumOfTopTwoPerGroup : RouterGroupSelection.None,
                _ => throw c.Invalid("topk_method", $"'{method}' is not supported (greedy, group_limited_greedy, noaux_tc)"),
            };
            // DeepSeek normalises only for top_k > 1 (GLM whenever norm_topk_prob), with a 1e-20 guard. V3 and GLM
            // (noaux_tc) always apply routed_scaling_factor; V2 applies it only when the weights are not normalised.
            var normalize = moe.NormTopKProb && (moe.TopK > 1 || modelType == "glm4_moe");
            var alwaysScale = method == "noaux_tc";
            spec = new RouterSpec
            {
                NumExperts = moe.NumExperts,
                TopK = moe.TopK,
                Scoring = moe.Scoring,
                GroupSelection = selection,
                NumGroups = moe.NumGroups,
                TopKGroups = moe.TopKGroups,
                UseCorrectionBias = method == "noaux_tc" && moe.HasCorrectionBias,
                Normalize = normalize,
                NormalizeEpsilon = 1e-20,
                ScalingFactor = alwaysScale || !normalize ? moe.RoutedScalingFactor : 1.0,
            };
        }
        spec.Validate();
        return spec;
    }
}
