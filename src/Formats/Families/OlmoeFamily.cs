using System.Text.Json.Nodes;

namespace MoECompress.Formats.Families;

/// <summary>
/// OLMoE (OlmoeForCausalLM): every layer is MoE; router <c>mlp.gate</c> [E, H]; experts
/// <c>mlp.experts.{e}.gate_proj/up_proj/down_proj</c>; q/k RMSNorm over the full projection width; softmax without
/// top-k renormalisation by default (norm_topk_prob=false).
/// </summary>
public sealed class OlmoeFamily : MoEFamilyBase
{
    public override string Name => "olmoe";
    public override IReadOnlyList<string> Architectures { get; } = ["OlmoeForCausalLM"];
    public override IReadOnlyList<string> ModelTypes { get; } = ["olmoe"];

    private static readonly StandardMoENames Names = new("mlp.", "gate", "gate_proj", "up_proj", "down_proj");

    public override MoEConfig ReadConfig(JsonObject config, string configPath)
    {
        var r = new ConfigReader(config, configPath);
        return ReadEveryLayerMoE(r, config, "num_experts", "num_experts_per_tok", r.Bool("norm_topk_prob", false));
    }

    protected override TensorRoleInfo? ClassifyMoEBlock(string rest, int layer, bool inMtp, MoEConfig config) =>
        ClassifyStandardMoE(rest, layer, inMtp, Names);

    protected override string RouterModule => "mlp.gate.weight";

    public override ExpertTensorRef ExpertTensor(int layer, int expert, ExpertProjection projection, MoEConfig config) =>
        StandardExpertTensor($"{LayerPrefix(layer, config)}mlp.", expert, projection, config, "gate_proj", "up_proj", "down_proj");
}
