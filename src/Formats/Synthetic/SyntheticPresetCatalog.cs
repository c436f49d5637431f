namespace MoECompress.Formats.Synthetic;

/// <summary>The synthetic fixtures this toolkit can write, one per real model layout it supports.</summary>
public static class SyntheticPresetCatalog
{
    public static IReadOnlyList<SyntheticPreset> All { get; } =
    [
        new() { Name = "mixtral", Family = "mixtral", ReferenceModel = "Mixtral-8x7B-v0.1", Layers = 4, Experts = 8, TopK = 2,
            Description = "Mixtral-8x7B layout: 8 experts top-2, w1/w2/w3 per expert" },
        new() { Name = "deepseek-v3", Family = "deepseek-v3", ReferenceModel = "DeepSeek-R1", KvHeads = 4, Layers = 4, Experts = 16, TopK = 4, Groups = 4, TopKGroups = 2,
            FirstDenseLayers = 1, Description = "DeepSeek-R1/V3 layout: MLA, 1 dense layer, 16 experts in 4 groups, shared expert, sigmoid + correction bias, 1 MTP layer" },
        new() { Name = "kimi-k2", Family = "deepseek-v3", ReferenceModel = "Kimi-K2", KvHeads = 4, Layers = 3, Experts = 16, TopK = 4, FirstDenseLayers = 1,
            Fp8Weights = true, Description = "Kimi K2 layout: DeepSeek-V3 architecture (model_type kimi_k2), MLA, 1 dense layer, 16 experts, shared expert, FP8 E4M3 weights with 128x128 weight_scale_inv" },
        new() { Name = "glm4.5-moe", Family = "glm4-moe", ReferenceModel = "GLM-4.5", Layers = 4, Experts = 16, TopK = 4, FirstDenseLayers = 1,
            Description = "GLM-4.5/4.6 layout: 1 dense layer, 16 experts, shared expert, sigmoid + correction bias, q/k/v biases, q/k norms, partial rotary, 1 MTP layer" },
        new() { Name = "deepseek-v2-lite", Family = "deepseek-v2", ReferenceModel = "DeepSeek-V2-Lite", KvHeads = 4, Layers = 3, Experts = 16, TopK = 4, FirstDenseLayers = 1,
            Description = "DeepSeek-V2-Lite layout: MLA without q LoRA, 1 dense layer, 2 shared experts" },
        new() { Name = "deepseek-moe", Family = "deepseek-moe", ReferenceModel = "deepseek-moe-16b", KvHeads = 4, Layers = 3, Experts = 16, TopK = 4, FirstDenseLayers = 1,
            Description = "deepseek-moe-16b layout: standard attention, 1 dense layer, 2 shared experts" },
        new() { Name = "qwen2-moe", Family = "qwen2-moe", ReferenceModel = "Qwen1.5-MoE-A2.7B", Layers = 3, Experts = 12, TopK = 4, SharedIntermediate = 64,
            Description = "Qwen1.5-MoE layout: 12 experts, sigmoid-gated shared expert, q/k/v biases" },
        new() { Name = "qwen3-moe", Family = "qwen3-moe", ReferenceModel = "Qwen3-30B-A3B", Layers = 3, Experts = 16, TopK = 4,
            Description = "Qwen3-30B-A3B layout: per-expert tensors, q/k norms" },
        new() { Name = "qwen3-moe-fused", Family = "qwen3-moe", ReferenceModel = "Qwen3-30B-A3B", Layers = 3, Experts = 16, TopK = 4, FusedExperts = true,
            Description = "Qwen3-30B-A3B as transformers v5 saves it: fused experts.gate_up_proj / experts.down_proj" },
        new() { Name = "qwen3.5-moe", Family = "qwen3.5-moe", ReferenceModel = "Qwen3.5-18B-REAP-A3B-Coding", Layers = 4, Experts = 16, TopK = 4, HeadDim = 32, WriteMtp = false,
            Description = "Qwen3.5 REAP layout: linear/full attention layers, per-expert experts, shared expert, F16, MTP declared but not stored" },
        new() { Name = "qwen3.6-moe", Family = "qwen3.5-moe", ReferenceModel = "Qwen3.6-35B-A3B", Layers = 4, Experts = 16, TopK = 4, HeadDim = 32, FusedExperts = true,
            Description = "Qwen3.6 layout: nested text_config, fused experts, shared expert, MTP layer, vision tower" },
        new() { Name = "qwen3-next", Family = "qwen3.5-moe", ReferenceModel = "Qwen3-Next-80B-A3B-Instruct", Layers = 4, Experts = 16, TopK = 4, HeadDim = 32,
            Description = "Qwen3-Next layout: every 4th layer gated full attention, Gated DeltaNet with fused in_proj_qkvz/in_proj_ba, per-expert experts, shared expert, 1 MTP layer" },
        new() { Name = "olmoe", Family = "olmoe", ReferenceModel = "OLMoE-1B-7B-0924", Layers = 3, Experts = 16, TopK = 4,
            Description = "OLMoE layout: 16 experts top-4, full-width q/k norms" },
        new() { Name = "phimoe", Family = "phimoe", ReferenceModel = "Phi-3.5-MoE-instruct", Layers = 3, Experts = 16, TopK = 2,
            Description = "Phi-3.5-MoE layout: LayerNorm with biases, attention and lm_head biases" },
        new() { Name = "granitemoe", Family = "granitemoe", ReferenceModel = "granite-3.0-1b-a400m-base", Layers = 3, Experts = 16, TopK = 4,
            Description = "GraniteMoE layout: fused input_linear/output_linear, router.layer, tied embeddings" },
        new() { Name = "granitemoe-shared", Family = "granitemoe", ReferenceModel = "granite-3.0-1b-a400m-base", Layers = 3, Experts = 16, TopK = 4,
            ConfigPatch = """{"architectures": ["GraniteMoeSharedForCausalLM"], "model_type": "granitemoeshared", "shared_intermediate_size": 1024}""",
            Description = "GraniteMoeShared layout: GraniteMoE plus shared_mlp.input_linear/output_linear (the granite-3.0-1b-a400m config relabelled; no public GraniteMoeShared config in the reference set)" },
        new() { Name = "gpt-oss", Family = "gpt-oss", ReferenceModel = "gpt-oss-20b", Layers = 4, Experts = 8, TopK = 2, ExpertIntermediate = 64,
            Description = "GPT-OSS-20b layout: MXFP4 expert blocks/scales, router and expert biases, attention sinks" },
    ];

    /// <summary>A preset by its name, or the first preset of a family name (case-insensitive).</summary>
    public static SyntheticPreset Get(string name) =>
        All.FirstOrDefault(p => string.Equals(p.Name, name, StringComparison.OrdinalIgnoreCase))
        ?? All.FirstOrDefault(p => string.Equals(p.Family, name, StringComparison.OrdinalIgnoreCase))
        ?? throw new Errors.MoeCompressException(Errors.ErrorKind.Usage,
            $"unknown synthetic preset '{name}'; presets: {string.Join(", ", All.Select(p => p.Name))}");
}
