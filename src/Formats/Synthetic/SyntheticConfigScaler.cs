using System.Text.Json;
using System.Text.Json.Nodes;
using MoECompress.Formats.Errors;

namespace MoECompress.Formats.Synthetic;

/// <summary>Resolved sizes of one synthetic checkpoint.</summary>
public sealed record SyntheticSizes(
    int Layers, int Experts, int TopK, int Hidden, int ExpertIntermediate, int DenseIntermediate, int SharedIntermediate,
    int Heads, int KvHeads, int HeadDim, int Vocab, int? Groups, int? TopKGroups, int? FirstDenseLayers);

/// <summary>
/// Turns a real config.json into a small one: every size key the model family reads is rewritten consistently
/// (hidden, layers, experts, top-k, intermediate sizes, heads, MLA ranks, linear-attention heads, layer_types,
/// DeepSeek groups and dense layers, vision tower, token ids within the new vocabulary); other keys stay as they are.
/// </summary>
public static class SyntheticConfigScaler
{
    /// <summary>Sizes for <paramref name="preset"/> under <paramref name="options"/>, with hidden and intermediate sizes times <paramref name="multiplier"/>.</summary>
    public static SyntheticSizes Resolve(SyntheticPreset preset, SyntheticOptions options, int multiplier = 1)
    {
        int layers = options.Layers ?? preset.Layers;
        if (layers < 1) throw Usage($"Layers must be at least 1, got {layers}");
        int experts = options.Experts ?? preset.Experts;
        if (experts < 1) throw Usage($"Experts must be at least 1, got {experts}");
        if (options.TopK is < 1) throw Usage($"TopK must be at least 1, got {options.TopK}");
        int topK = Math.Min(options.TopK ?? preset.TopK, experts);
        int hidden = (options.TargetBytes is null ? options.Hidden ?? preset.Hidden : preset.Hidden) * multiplier;
        if (hidden < 32 || hidden % 32 != 0) throw Usage($"Hidden must be a positive multiple of 32, got {hidden}");
        int heads = options.Heads ?? preset.Heads, kvHeads = options.KvHeads ?? Math.Min(preset.KvHeads, heads);
        if (heads < 1 || kvHeads < 1 || heads % kvHeads != 0)
            throw Usage($"Heads ({heads}) must be a positive multiple of the key/value heads ({kvHeads})");
        int? headDim = options.HeadDim ?? preset.HeadDim;
        if (headDim is null && hidden % heads != 0) throw Usage($"Hidden must be a multiple of the {heads} attention heads, got {hidden}");
        if (headDim is < 2 or > 1024 || headDim % 2 == 1) throw Usage($"HeadDim must be an even size between 2 and 1024, got {headDim}");
        int expertIntermediate = options.TargetBytes is null && options.Intermediate is { } oi ? oi : preset.ExpertIntermediate * multiplier;
        int denseIntermediate = options.TargetBytes is null && options.DenseIntermediate is { } od ? od : preset.DenseIntermediate * multiplier;
        if (expertIntermediate < 1 || denseIntermediate < 1)
            throw Usage($"Intermediate sizes must be positive, got {expertIntermediate} (experts) and {denseIntermediate} (dense)");
        int? groups = null, topKGroups = null;
        if (preset.Groups is int g0)
        {
            int g = Math.Min(g0, experts);
            while (experts % g != 0) g--;
            int tg = Math.Min(preset.TopKGroups ?? 1, g);
            while (tg < g && tg * (experts / g) < topK) tg++;
            groups = g;
            topKGroups = tg;
        }
        int? firstDense = preset.FirstDenseLayers is int fd ? Math.Min(fd, layers - 1) : null;
        // Shared experts keep the preset's ratio to the routed experts' width.
        int shared = Math.Max(1, (int)((long)preset.SharedIntermediate * expertIntermediate / preset.ExpertIntermediate));
        return new SyntheticSizes(layers, experts, topK, hidden, expertIntermediate, denseIntermediate, shared, heads, kvHeads,
            headDim ?? hidden / heads, preset.Vocab, groups, topKGroups, firstDense);
    }

    /// <summary>The scaled config.json of <paramref name="preset"/>.</summary>
    public static JsonObject Build(SyntheticPreset preset, SyntheticSizes s)
    {
        var root = ReferenceConfigs.Load(preset.ReferenceModel);
        var section = root["text_config"] as JsonObject ?? root;
        if (preset.ConfigPatch is { } patch)
            foreach (var (key, value) in (JsonObject)JsonNode.Parse(patch)!)
                section[key] = value?.DeepClone();
        bool qwenOrDeepSeek = preset.Family.StartsWith("qwen", StringComparison.Ordinal) || preset.Family.StartsWith("deepseek", StringComparison.Ordinal)
            || preset.Family.StartsWith("glm", StringComparison.Ordinal);
        int headDim = s.HeadDim;

        section["hidden_size"] = s.Hidden;
        section["num_hidden_layers"] = s.Layers;
        section["vocab_size"] = s.Vocab;
        section["num_attention_heads"] = s.Heads;
        SetIfPresent(section, "num_key_value_heads", s.KvHeads);
        SetIfPresent(section, "head_dim", headDim);
        foreach (var key in new[] { "num_local_experts", "num_experts", "n_routed_experts" }) SetIfPresent(section, key, s.Experts);
        foreach (var key in new[] { "num_experts_per_tok", "experts_per_token" }) SetIfPresent(section, key, s.TopK);

        if (qwenOrDeepSeek)
        {
            section["moe_intermediate_size"] = s.ExpertIntermediate;
            SetIfPresent(section, "intermediate_size", s.DenseIntermediate);
            SetIfPresent(section, "shared_expert_intermediate_size", s.SharedIntermediate);
        }
        else
        {
            section["intermediate_size"] = s.ExpertIntermediate;
            SetIfPresent(section, "shared_intermediate_size", s.SharedIntermediate);
        }

        // DeepSeek: dense-first layers, groups, MLA ranks; the synthetic weights are BF16, so no FP8 quantization_config.
        if (s.FirstDenseLayers is int fd) SetIfPresent(section, "first_k_dense_replace", fd);
        if (s.Groups is int g) { section["n_group"] = g; section["topk_group"] = s.TopKGroups; }
        if (section["q_lora_rank"] is JsonValue) section["q_lora_rank"] = 32;
        SetIfPresent(section, "kv_lora_rank", 16);
        SetIfPresent(section, "qk_nope_head_dim", 8);
        SetIfPresent(section, "qk_rope_head_dim", 8);
        SetIfPresent(section, "v_head_dim", 8);
        if (!preset.Fp8Weights && root["quantization_config"] is JsonObject q && q["quant_method"]?.GetValue<string>() == "fp8") root.Remove("quantization_config");

        // Qwen3.5 Gated DeltaNet heads.
        SetIfPresent(section, "linear_num_key_heads", 2);
        SetIfPresent(section, "linear_num_value_heads", 4);
        SetIfPresent(section, "linear_key_head_dim", 8);
        SetIfPresent(section, "linear_value_head_dim", 8);

        // Per-layer lists follow the original pattern.
        if (section["layer_types"] is JsonArray types && types.Count > 0)
            section["layer_types"] = new JsonArray(Enumerable.Range(0, s.Layers).Select(l => (JsonNode?)types[l % types.Count]!.GetValue<string>()).ToArray());
        if (section["mlp_only_layers"] is JsonArray mlpOnly)
            section["mlp_only_layers"] = new JsonArray(mlpOnly.Select(n => n!.GetValue<int>()).Where(l => l < s.Layers).Select(l => (JsonNode?)l).ToArray());
        if (section["max_window_layers"] is JsonValue) section["max_window_layers"] = s.Layers;

        ScaleMropeSections(section, headDim);

        if (root["vision_config"] is JsonObject vision)
        {
            vision["depth"] = 1;
            vision["hidden_size"] = 32;
            vision["intermediate_size"] = 64;
            vision["num_heads"] = 2;
            vision["out_hidden_size"] = s.Hidden;
            vision["num_position_embeddings"] = 16;
            vision["patch_size"] = 4;
        }

        var remap = new Dictionary<int, int>();
        RemapTokenIds(root, s.Vocab, remap);
        if (!ReferenceEquals(section, root)) RemapTokenIds(section, s.Vocab, remap);
        return root;
    }

    /// <summary>Token ids beyond the new vocabulary map to the top ids (V−1, V−2, …), equal ids staying equal.</summary>
    internal static void RemapTokenIds(JsonObject obj, int vocab, Dictionary<int, int> remap)
    {
        foreach (var key in obj.Select(kv => kv.Key).Where(k => k.EndsWith("_token_id", StringComparison.Ordinal) || k == "eos_token_ids").ToList())
        {
            switch (obj[key])
            {
                case JsonValue v when v.GetValueKind() == JsonValueKind.Number:
                    obj[key] = Map(v.GetValue<int>());
                    break;
                case JsonArray a:
                    obj[key] = new JsonArray(a.Select(n => (JsonNode?)Map(n!.GetValue<int>())).ToArray());
                    break;
            }
        }

        int Map(int id)
        {
            if (id < vocab) return id;
            if (!remap.TryGetValue(id, out var mapped)) remap[id] = mapped = vocab - 1 - remap.Count;
            return mapped;
        }
    }

    /// <summary>Qwen3.5 multimodal RoPE: mrope_section must sum to the rotary half-dimension.</summary>
    private static void ScaleMropeSections(JsonObject section, int headDim)
    {
        foreach (var key in new[] { "rope_parameters", "rope_scaling" })
        {
            if (section[key] is not JsonObject rope || rope["mrope_section"] is not JsonArray mrope || mrope.Count == 0) continue;
            double partial = rope["partial_rotary_factor"]?.GetValue<double>() ?? section["partial_rotary_factor"]?.GetValue<double>() ?? 1.0;
            int target = Math.Max(1, (int)(headDim * partial) / 2);
            // Largest-remainder apportionment keeps the sections' proportions.
            var orig = mrope.Select(n => n!.GetValue<int>()).ToArray();
            double sum = orig.Sum();
            var exact = orig.Select(v => v * target / sum).ToArray();
            var scaled = exact.Select(x => (int)Math.Floor(x)).ToArray();
            foreach (int i in Enumerable.Range(0, orig.Length).OrderByDescending(i => exact[i] - scaled[i]).ThenBy(i => i).Take(target - scaled.Sum()))
                scaled[i]++;
            rope["mrope_section"] = new JsonArray(scaled.Select(v => (JsonNode?)v).ToArray());
        }
    }

    private static void SetIfPresent(JsonObject obj, string key, int value)
    {
        if (obj.ContainsKey(key)) obj[key] = value;
    }

    private static MoeCompressException Usage(string message) => new(ErrorKind.Usage, "synthetic checkpoint: " + message);
}
