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
        var (experts, topK) = ReadExpertsAndTopK(r, "num_experts", "num_experts_per_tok");
        int layers = r.PositiveInt("num_hidden_layers");
        return new MoEConfig
        {
            Family = Name,
            Architecture = ArchitectureOf(config),
            NumLayers = layers,
            HiddenSize = r.PositiveInt("hidden_size"),
            VocabSize = r.PositiveInt("vocab_size"),
            NumExperts = experts,
            TopK = topK,
            ExpertIntermediateSize = r.PositiveInt("intermediate_size"),
            IsMoELayer = AllLayers(layers, true),
            NormTopKProb = r.Bool("norm_topk_prob", false),
            TieWordEmbeddings = r.Bool("tie_word_embeddings", false),
            ExpertCountKeys = PresentKeys(r, "num_experts"),
            TopKKey = "num_experts_per_tok",
        };
    }

    protected override TensorRoleInfo? ClassifyMoEBlock(string rest, int layer, bool inMtp, MoEConfig config) =>
        ClassifyStandardMoE(rest, layer, inMtp, Names);

    protected override string RouterModule => "mlp.gate.weight";

    public override ExpertTensorRef ExpertTensor(int layer, int expert, ExpertProjection projection, MoEConfig config) =>
        StandardExpertTensor($"{LayerPrefix(layer, config)}mlp.", expert, projection, config, "gate_proj", "up_proj", "down_proj");
}
