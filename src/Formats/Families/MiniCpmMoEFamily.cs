using System.Text.Json.Nodes;

namespace MoECompress.Formats.Families;

/// <summary>
/// MiniCPM-MoE (MiniCPMForCausalLM with num_experts &gt; 0): every layer is MoE; router <c>mlp.gate</c> [E, H];
/// experts <c>mlp.experts.{e}.w1</c> (gate) / <c>w3</c> (up) / <c>w2</c> (down), as vLLM's MiniCPM loader maps them.
/// Dense MiniCPM checkpoints share the architecture name and are not claimed.
/// </summary>
public sealed class MiniCpmMoEFamily : MoEFamilyBase
{
    public override string Name => "minicpm-moe";
    public override IReadOnlyList<string> Architectures { get; } = ["MiniCPMForCausalLM"];
    public override IReadOnlyList<string> ModelTypes { get; } = ["minicpm"];

    private static readonly StandardMoENames Names = new("mlp.", "gate", "w1", "w3", "w2");

    public override bool Matches(JsonObject config) =>
        base.Matches(config) && new ConfigReader(config, "config.json").Int("num_experts", 0) > 0;

    public override MoEConfig ReadConfig(JsonObject config, string configPath) =>
        ReadEveryLayerMoE(new ConfigReader(config, configPath), config, "num_experts", "num_experts_per_tok", normTopK: true,
            tieEmbeddingsByDefault: true);

    protected override TensorRoleInfo? ClassifyMoEBlock(string rest, int layer, bool inMtp, MoEConfig config) =>
        ClassifyStandardMoE(rest, layer, inMtp, Names);

    protected override string RouterModule => "mlp.gate.weight";

    public override ExpertTensorRef ExpertTensor(int layer, int expert, ExpertProjection projection, MoEConfig config) =>
        StandardExpertTensor($"{LayerPrefix(layer, config)}mlp.", expert, projection, config, "w1", "w3", "w2");
}
