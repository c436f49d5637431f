namespace MoECompress.Formats.Families;

/// <summary>
/// GLM-4.5 / 4.6 (Glm4MoeForCausalLM, model_type glm4_moe): the DeepSeek-V3 MoE layout without MLA. Routed experts
/// <c>mlp.experts.{e}.gate_proj/up_proj/down_proj</c> (or transformers-v5 fused), router <c>mlp.gate.weight</c> with the
/// selection-only <c>mlp.gate.e_score_correction_bias</c> (F32; transformers always has it), sigmoid scoring,
/// n_group/topk_group, routed_scaling_factor, one <c>mlp.shared_experts.*</c> block, the first first_k_dense_replace
/// layers dense, and the MTP layer <c>model.layers.{num_hidden_layers}</c> (its own experts plus eh_proj, enorm, hnorm,
/// shared_head). Attention is standard grouped-query with q/k/v biases (attention_bias), optional per-head q/k RMSNorm
/// (use_qk_norm) and partial rotary (partial_rotary_factor).
/// </summary>
public sealed class Glm4MoeFamily : DeepSeekFamilyBase
{
    public override string Name => "glm4-moe";
    public override IReadOnlyList<string> Architectures { get; } = ["Glm4MoeForCausalLM"];
    public override IReadOnlyList<string> ModelTypes { get; } = ["glm4_moe"];
    protected override string DefaultScoring => "sigmoid";
    protected override bool HasCorrectionBias(ConfigReader r) => true;
}
