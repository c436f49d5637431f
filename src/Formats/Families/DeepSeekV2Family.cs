namespace MoECompress.Formats.Families;

/// <summary>
/// DeepSeek-V2 / V2-Lite (DeepseekV2ForCausalLM): the DeepSeek MoE layout with MLA attention
/// (q_proj, or q_a_proj/q_a_layernorm/q_b_proj when q_lora_rank is set; kv_a_proj_with_mqa, kv_a_layernorm, kv_b_proj,
/// o_proj), softmax scoring and group-limited greedy routing (n_group/topk_group).
/// </summary>
public sealed class DeepSeekV2Family : DeepSeekFamilyBase
{
    public override string Name => "deepseek-v2";
    public override IReadOnlyList<string> Architectures { get; } = ["DeepseekV2ForCausalLM"];
    public override IReadOnlyList<string> ModelTypes { get; } = ["deepseek_v2"];
    protected override bool HasCorrectionBias(ConfigReader r) => false;
}
