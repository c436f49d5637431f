namespace MoECompress.Formats.Families;

/// <summary>
/// Qwen3-MoE (Qwen3MoeForCausalLM): Qwen2-MoE's layout without a shared expert, with q/k RMSNorm; experts are stored
/// per expert (<c>mlp.experts.{e}.gate_proj/up_proj/down_proj</c>) or, as transformers v5 saves them, fused
/// (<c>mlp.experts.gate_up_proj</c> [E, 2I, H] gate rows first, <c>mlp.experts.down_proj</c> [E, H, I]); which one is
/// decided from the tensor names.
/// </summary>
public sealed class Qwen3MoeFamily : Qwen2MoeFamily
{
    public override string Name => "qwen3-moe";
    public override IReadOnlyList<string> Architectures { get; } = ["Qwen3MoeForCausalLM"];
    public override IReadOnlyList<string> ModelTypes { get; } = ["qwen3_moe"];
}
