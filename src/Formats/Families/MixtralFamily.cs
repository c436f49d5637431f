using System.Text.Json.Nodes;

namespace MoECompress.Formats.Families;

/// <summary>
/// Mixtral (MixtralForCausalLM): every layer is MoE; router <c>block_sparse_moe.gate</c> [E, H]; experts
/// <c>block_sparse_moe.experts.{e}.w1</c> (gate) / <c>w3</c> (up) [I, H] and <c>w2</c> (down) [H, I]; softmax over all
/// experts, top-k, renormalised.
/// </summary>
public class MixtralFamily : MoEFamilyBase
{
    public override string Name => "mixtral";
    public override IReadOnlyList<string> Architectures { get; } = ["MixtralForCausalLM"];
    public override IReadOnlyList<string> ModelTypes { get; } = ["mixtral"];

    private protected static readonly StandardMoENames Names = new("block_sparse_moe.", "gate", "w1", "w3", "w2");

    public override MoEConfig ReadConfig(JsonObject config, string configPath) =>
        ReadEveryLayerMoE(new ConfigReader(config, configPath), config, "num_local_experts", "num_experts_per_tok", NormalisesTopK);

    /// <summary>Mixtral renormalises the top-k softmax probabilities; Phi-3.5-MoE's sparsemixer does not.</summary>
    protected virtual bool NormalisesTopK => true;

    protected override TensorRoleInfo? ClassifyMoEBlock(string rest, int layer, bool inMtp, MoEConfig config) =>
        ClassifyStandardMoE(rest, layer, inMtp, Names);

    protected override string RouterModule => "block_sparse_moe.gate.weight";

    public override ExpertTensorRef ExpertTensor(int layer, int expert, ExpertProjection projection, MoEConfig config) =>
        StandardExpertTensor($"{LayerPrefix(layer, config)}block_sparse_moe.", expert, projection, config, "w1", "w3", "w2");
}
