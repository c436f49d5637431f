namespace MoECompress.Formats.Families;

/// <summary>
/// DeepSeek-MoE (DeepseekForCausalLM, deepseek-moe-16b): the DeepSeek MoE layout with standard multi-head attention
/// (q_proj/k_proj/v_proj/o_proj), softmax routing, no groups.
/// </summary>
public sealed class DeepSeekMoEFamily : DeepSeekFamilyBase
{
    public override string Name => "deepseek-moe";
    public override IReadOnlyList<string> Architectures { get; } = ["DeepseekForCausalLM"];
    public override IReadOnlyList<string> ModelTypes { get; } = ["deepseek"];
    protected override bool HasCorrectionBias(ConfigReader r) => false;
}
