using System.Text.Json.Nodes;

namespace MoECompress.Formats.Families;

/// <summary>
/// What DeepSeek-MoE, DeepSeek-V2 and DeepSeek-V3 share: n_routed_experts routed experts
/// (<c>mlp.experts.{e}.gate_proj/up_proj/down_proj</c>, router <c>mlp.gate.weight</c>), n_shared_experts fused into one
/// <c>mlp.shared_experts.*</c> block of n_shared_experts × moe_intermediate_size, the first first_k_dense_replace layers
/// (and layers not on the moe_layer_freq step) dense <c>mlp.gate_proj/up_proj/down_proj</c> of intermediate_size,
/// group-limited routing (n_group, topk_group), routed_scaling_factor, norm_topk_prob, and MTP layers
/// (num_nextn_predict_layers) stored as <c>model.layers.{N+k}</c> with enorm/hnorm/eh_proj/shared_head.
/// </summary>
public abstract class DeepSeekFamilyBase : MoEFamilyBase
{
    private static readonly StandardMoENames Names =
        new("mlp.", "gate", "gate_proj", "up_proj", "down_proj", Shared: "shared_experts", DenseMlp: true);

    /// <summary>Scoring when config.json has no scoring_func.</summary>
    protected virtual string DefaultScoring => "softmax";

    /// <summary>Whether the router has e_score_correction_bias (DeepSeek-V3's auxiliary-loss-free balancing).</summary>
    protected abstract bool HasCorrectionBias(ConfigReader r);

    public override MoEConfig ReadConfig(JsonObject config, string configPath)
    {
        var r = new ConfigReader(config, configPath);
        var (experts, topK) = ReadExpertsAndTopK(r, "n_routed_experts", "num_experts_per_tok");
        int layers = r.PositiveInt("num_hidden_layers");
        int firstDense = r.Int("first_k_dense_replace", 0);
        if (firstDense < 0 || firstDense > layers)
            throw r.Error("first_k_dense_replace", $"= {firstDense} is outside 0..num_hidden_layers ({layers})");
        int freq = r.Int("moe_layer_freq", 1);
        if (freq < 1) throw r.Error("moe_layer_freq", $"must be at least 1, got {freq}");
        bool IsMoE(int l) => l >= firstDense && l % freq == 0;
        int mtp = r.Int("num_nextn_predict_layers", 0);
        if (mtp < 0) throw r.Error("num_nextn_predict_layers", $"must not be negative, got {mtp}");

        int groups = r.Int("n_group", 1);
        int topKGroups = r.Int("topk_group", 1);
        if (groups < 1) throw r.Error("n_group", $"must be at least 1, got {groups}");
        if (experts % groups != 0) throw r.Error("n_group", $"= {groups} does not divide n_routed_experts = {experts}");
        if (topKGroups < 1 || topKGroups > groups) throw r.Error("topk_group", $"= {topKGroups} is outside 1..n_group ({groups})");
        if ((long)topKGroups * (experts / groups) < topK)
            throw r.Error("topk_group", $"= {topKGroups} groups of {experts / groups} experts cannot supply num_experts_per_tok = {topK}");

        var scoring = (r.String("scoring_func") ?? DefaultScoring) switch
        {
            "softmax" => RouterScoring.Softmax,
            "sigmoid" => RouterScoring.Sigmoid,
            var s => throw r.Error("scoring_func", $"= '{s}' is not supported (softmax or sigmoid)"),
        };
        int moeI = r.PositiveInt("moe_intermediate_size");
        int shared = r.Int("n_shared_experts", 0);
        var isMoE = Enumerable.Range(0, layers).Select(IsMoE).ToList();
        return new MoEConfig
        {
            Family = Name,
            Architecture = ArchitectureOf(config),
            NumLayers = layers,
            HiddenSize = r.PositiveInt("hidden_size"),
            VocabSize = r.PositiveInt("vocab_size"),
            NumExperts = experts,
            TopK = topK,
            ExpertIntermediateSize = moeI,
            DenseIntermediateSize = isMoE.Contains(false) ? r.PositiveInt("intermediate_size") : 0,
            IsMoELayer = isMoE,
            NumSharedExperts = shared,
            SharedExpertIntermediateSize = shared * moeI,
            NumGroups = groups,
            TopKGroups = topKGroups,
            Scoring = scoring,
            NormTopKProb = r.Bool("norm_topk_prob", false),
            RoutedScalingFactor = r.Double("routed_scaling_factor", 1.0),
            HasCorrectionBias = HasCorrectionBias(r),
            NumMtpLayers = mtp,
            MtpLayersAreMoE = mtp > 0 && IsMoE(layers),
            TieWordEmbeddings = r.Bool("tie_word_embeddings", false),
            ExpertCountKeys = PresentKeys(r, "n_routed_experts"),
            TopKKey = "num_experts_per_tok",
            ExpertIntermediateKey = "moe_intermediate_size",
        };
    }

    protected override TensorRoleInfo? ClassifyMoEBlock(string rest, int layer, bool inMtp, MoEConfig config) =>
        ClassifyStandardMoE(rest, layer, inMtp, Names);

    protected override TensorRoleInfo? ClassifyMtpPart(string rest, int layer) => rest switch
    {
        "embed_tokens.weight" => new(TensorRole.Embedding, layer, InMtp: true),
        "enorm.weight" or "hnorm.weight" or "shared_head.norm.weight" => new(TensorRole.Norm, layer, InMtp: true),
        "shared_head.head.weight" => new(TensorRole.LmHead, layer, InMtp: true),
        "eh_proj.weight" => new(TensorRole.Mtp, layer, InMtp: true),
        _ => null,
    };

    protected override string RouterModule => "mlp.gate.weight";

    public override string? CorrectionBiasName(int layer, MoEConfig config) =>
        config.HasCorrectionBias ? $"{LayerPrefix(layer, config)}mlp.gate.e_score_correction_bias" : null;

    public override ExpertTensorRef ExpertTensor(int layer, int expert, ExpertProjection projection, MoEConfig config) =>
        StandardExpertTensor($"{LayerPrefix(layer, config)}mlp.", expert, projection, config, "gate_proj", "up_proj", "down_proj");
}
