using System.Text.Json.Nodes;

namespace MoECompress.Formats.Families;

/// <summary>
/// Phi-3.5-MoE (PhiMoEForCausalLM remote code, PhimoeForCausalLM in transformers): Mixtral's tensor layout
/// (<c>block_sparse_moe.gate</c>, <c>experts.{e}.w1/w2/w3</c>) with LayerNorm (weight and bias) instead of RMSNorm,
/// attention biases, an optional lm_head bias, and sparsemixer routing (top-2, no renormalisation).
/// </summary>
public sealed class PhiMoEFamily : MixtralFamily
{
    public override string Name => "phimoe";
    public override IReadOnlyList<string> Architectures { get; } = ["PhiMoEForCausalLM", "PhimoeForCausalLM"];
    public override IReadOnlyList<string> ModelTypes { get; } = ["phimoe"];
    protected override bool NormalisesTopK => false;
}
