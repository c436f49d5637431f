namespace MoECompress.Formats.Families;

/// <summary>What a tensor is, from the point of view of MoE compression.</summary>
public enum TensorRole
{
    RoutedExpert,
    RouterWeight,
    RouterBias,
    /// <summary>DeepSeek-V3 e_score_correction_bias: used for expert selection only.</summary>
    CorrectionBias,
    SharedExpert,
    SharedExpertGate,
    DenseMlp,
    Attention,
    Norm,
    Embedding,
    LmHead,
    /// <summary>Anything else in an MTP (multi-token prediction) layer that is not one of the roles above.</summary>
    Mtp,
    /// <summary>The vision tower and projector of a multimodal checkpoint (Qwen3.5/3.6 <c>model.visual.*</c>): passed through unchanged.</summary>
    Vision,
    Other,
}

/// <summary>Which projection of an expert (or dense/shared MLP) a tensor holds.</summary>
public enum ExpertProjection
{
    Gate,
    Up,
    Down,
    /// <summary>A fused tensor holding gate and up together (Qwen3 v5 gate_up_proj, GraniteMoE input_linear, GPT-OSS).</summary>
    GateUp,
}

/// <summary>
/// The role of one tensor. <see cref="Layer"/> is the decoder layer (MTP layers are numbered after the last decoder
/// layer, as DeepSeek and Qwen store them, with <see cref="InMtp"/> set). <see cref="Expert"/> is null for fused
/// tensors that hold every expert (<see cref="Fused"/>). <see cref="QuantScale"/> marks the companion scale tensor of a
/// quantized weight (FP8 <c>weight_scale_inv</c>, MXFP4 <c>*_scales</c>): it has the role of the weight it scales but
/// holds no parameters of its own. <see cref="IsBias"/> marks bias vectors (of experts, shared experts, attention).
/// </summary>
public sealed record TensorRoleInfo(
    TensorRole Role,
    int? Layer = null,
    int? Expert = null,
    ExpertProjection? Projection = null,
    bool Fused = false,
    bool InMtp = false,
    bool QuantScale = false,
    bool IsBias = false)
{
    /// <summary>The role every unknown tensor gets.</summary>
    public static TensorRoleInfo Unknown { get; } = new(TensorRole.Other);
}
