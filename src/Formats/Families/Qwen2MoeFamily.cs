using System.Text.Json.Nodes;

namespace MoECompress.Formats.Families;

/// <summary>
/// Qwen2-MoE / Qwen1.5-MoE (Qwen2MoeForCausalLM): router <c>mlp.gate</c> [E, H]; experts
/// <c>mlp.experts.{e}.gate_proj/up_proj/down_proj</c>; one shared expert <c>mlp.shared_expert.*</c>
/// (shared_expert_intermediate_size) scaled by the sigmoid of <c>mlp.shared_expert_gate</c> [1, H]. A layer is MoE when
/// it is not in mlp_only_layers and (layer+1) % decoder_sparse_step == 0; other layers are dense
/// <c>mlp.gate_proj/up_proj/down_proj</c> (intermediate_size).
/// </summary>
public class Qwen2MoeFamily : MoEFamilyBase
{
    public override string Name => "qwen2-moe";
    public override IReadOnlyList<string> Architectures { get; } = ["Qwen2MoeForCausalLM"];
    public override IReadOnlyList<string> ModelTypes { get; } = ["qwen2_moe"];

    private protected static readonly StandardMoENames Names =
        new("mlp.", "gate", "gate_proj", "up_proj", "down_proj", Shared: "shared_expert", SharedGate: "shared_expert_gate", DenseMlp: true);

    /// <summary>Default of norm_topk_prob when config.json omits it (transformers' config default).</summary>
    protected virtual bool DefaultNormTopKProb => false;

    public override MoEConfig ReadConfig(JsonObject config, string configPath) =>
        ReadQwenConfig(new ConfigReader(config, configPath), config);

    /// <summary>Reads the Qwen MoE keys from <paramref name="r"/>'s section (the root, or text_config for Qwen3.5).</summary>
    private protected MoEConfig ReadQwenConfig(ConfigReader r, JsonObject root)
    {
        var (experts, topK) = ReadExpertsAndTopK(r, "num_experts", "num_experts_per_tok");
        int layers = r.PositiveInt("num_hidden_layers");
        int step = r.Int("decoder_sparse_step", 1);
        if (step < 1) throw r.Error("decoder_sparse_step", $"must be at least 1, got {step}");
        var mlpOnly = r.IntList("mlp_only_layers").ToHashSet();
        var isMoE = Enumerable.Range(0, layers).Select(l => !mlpOnly.Contains(l) && (l + 1) % step == 0).ToList();
        int sharedI = r.Int("shared_expert_intermediate_size", 0);
        int denseI = r.Int("intermediate_size", 0);
        if (denseI == 0 && isMoE.Contains(false))
            throw r.Error("intermediate_size", "is missing but some layers are dense (decoder_sparse_step / mlp_only_layers)");
        return new MoEConfig
        {
            Family = Name,
            Architecture = ArchitectureOf(root),
            NumLayers = layers,
            HiddenSize = r.PositiveInt("hidden_size"),
            VocabSize = r.PositiveInt("vocab_size"),
            NumExperts = experts,
            TopK = topK,
            ExpertIntermediateSize = r.PositiveInt("moe_intermediate_size"),
            DenseIntermediateSize = isMoE.Contains(false) ? denseI : 0,
            IsMoELayer = isMoE,
            NumSharedExperts = sharedI > 0 ? 1 : 0,
            SharedExpertIntermediateSize = sharedI,
            HasSharedExpertGate = sharedI > 0,
            NormTopKProb = r.Bool("norm_topk_prob", DefaultNormTopKProb),
            TieWordEmbeddings = r.BoolAnyLevel("tie_word_embeddings", false),
            NumMtpLayers = MtpLayers(r),
            MtpLayersAreMoE = MtpLayers(r) > 0,
            ExpertCountKeys = PresentKeys(r, "num_experts"),
            TopKKey = r.PathOf("num_experts_per_tok"),
            ModelPrefix = DefaultModelPrefix(root),
            ConfigSectionPrefix = r.SectionPrefix,
            ExpertIntermediateKey = "moe_intermediate_size",
        };
    }

    /// <summary>MTP layers the config declares (none for Qwen2/Qwen3-MoE).</summary>
    private protected virtual int MtpLayers(ConfigReader r) => 0;

    private protected virtual string DefaultModelPrefix(JsonObject root) => "model.";

    protected override TensorRoleInfo? ClassifyMoEBlock(string rest, int layer, bool inMtp, MoEConfig config) =>
        ClassifyStandardMoE(rest, layer, inMtp, Names);

    protected override string RouterModule => "mlp.gate.weight";

    public override ExpertTensorRef ExpertTensor(int layer, int expert, ExpertProjection projection, MoEConfig config) =>
        StandardExpertTensor($"{LayerPrefix(layer, config)}mlp.", expert, projection, config, "gate_proj", "up_proj", "down_proj");
}
