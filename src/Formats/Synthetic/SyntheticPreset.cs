namespace MoECompress.Formats.Synthetic;

/// <summary>
/// A synthetic checkpoint recipe: the real config it follows (<see cref="ReferenceModel"/>, one of
/// <see cref="ReferenceConfigs.Names"/>), the family adapter that reads it, and the default scaled-down sizes.
/// </summary>
public sealed record SyntheticPreset
{
    public required string Name { get; init; }
    /// <summary><see cref="Families.IMoEFamily.Name"/> of the family the checkpoint belongs to.</summary>
    public required string Family { get; init; }
    public required string ReferenceModel { get; init; }
    public required string Description { get; init; }

    public int Layers { get; init; } = 3;
    public int Experts { get; init; } = 8;
    public int TopK { get; init; } = 2;
    public int Hidden { get; init; } = 64;
    /// <summary>Routed expert intermediate size.</summary>
    public int ExpertIntermediate { get; init; } = 32;
    /// <summary>Dense MLP intermediate size (models with dense layers).</summary>
    public int DenseIntermediate { get; init; } = 64;
    /// <summary>Shared expert intermediate size (Qwen-style single shared expert).</summary>
    public int SharedIntermediate { get; init; } = 32;
    public int Heads { get; init; } = 4;
    public int KvHeads { get; init; } = 2;
    public int Vocab { get; init; } = 256;
    /// <summary>Attention head size where the model sets head_dim independently of hidden / heads (Qwen3.5); null = hidden / heads.</summary>
    public int? HeadDim { get; init; }
    /// <summary>DeepSeek group-limited routing: groups and groups kept (null = keep the config's, which must fit).</summary>
    public int? Groups { get; init; }
    public int? TopKGroups { get; init; }
    /// <summary>DeepSeek first_k_dense_replace.</summary>
    public int? FirstDenseLayers { get; init; }
    /// <summary>Write the transformers-v5 fused expert layout (Qwen3-MoE, Qwen3.5 family).</summary>
    public bool FusedExperts { get; init; }
    /// <summary>
    /// Store the decoder layers' linear weights (attention, experts, shared experts, dense MLPs; not routers) as
    /// F8_E4M3 with F32 <c>weight_scale_inv</c> blocks, as the FP8 releases (DeepSeek-V3, Kimi K2) do, and keep the
    /// config's FP8 quantization_config.
    /// </summary>
    public bool Fp8Weights { get; init; }
    /// <summary>Write the MTP layer tensors the config declares (some real checkpoints drop them).</summary>
    public bool WriteMtp { get; init; } = true;
    /// <summary>
    /// A JSON object whose keys replace those of the reference config (its language model section) before scaling:
    /// for a layout variant without a public config of its own in the reference set (GraniteMoeShared). Null: none.
    /// </summary>
    public string? ConfigPatch { get; init; }
}
