using System.Text.Json.Nodes;

namespace MoECompress.Formats.Families;

/// <summary>
/// Qwen3.5/3.6-MoE (Qwen3_5MoeForConditionalGeneration, Qwen3_5MoeForCausalLM) and Qwen3-Next: hybrid layers
/// (Gated DeltaNet <c>linear_attn.*</c> and gated full attention), every layer MoE with one sigmoid-gated shared expert,
/// and MTP layers stored as <c>mtp.layers.{k}.*</c> plus <c>mtp.fc</c> and norms (numbered after the decoder layers).
/// Multimodal checkpoints nest the language model config under "text_config" and its tensors under
/// <c>model.language_model.</c>, beside the vision tower <c>model.visual.*</c>. Experts are per expert (Qwen3.5 REAP) or
/// fused (Qwen3.6: <c>mlp.experts.gate_up_proj</c> [E, 2I, H], <c>mlp.experts.down_proj</c> [E, H, I]).
/// </summary>
public sealed class Qwen35MoeFamily : Qwen2MoeFamily
{
    public override string Name => "qwen3.5-moe";
    public override IReadOnlyList<string> Architectures { get; } =
        ["Qwen3_5MoeForConditionalGeneration", "Qwen3_5MoeForCausalLM", "Qwen3NextForCausalLM"];
    public override IReadOnlyList<string> ModelTypes { get; } = ["qwen3_5_moe", "qwen3_5_moe_text", "qwen3_next"];

    private const string LanguageModelPrefix = "model.language_model.";

    protected override bool DefaultNormTopKProb => true;

    public override MoEConfig ReadConfig(JsonObject config, string configPath) =>
        ReadQwenConfig(new ConfigReader(config, configPath, nestedSection: "text_config"), config);

    /// <summary>
    /// mtp_num_hidden_layers (Qwen3.5) or num_nextn_predict_layers; Qwen3-Next's config names neither, yet its
    /// releases store one MTP layer (<c>mtp.layers.0.*</c>), the count vLLM and SGLang assume.
    /// </summary>
    private protected override int MtpLayers(ConfigReader r) =>
        r.Int("mtp_num_hidden_layers", r.Int("num_nextn_predict_layers", r.String("model_type") == "qwen3_next" ? 1 : 0));

    private protected override string DefaultModelPrefix(JsonObject root) =>
        ArchitectureOf(root).EndsWith("ForConditionalGeneration", StringComparison.Ordinal) ? LanguageModelPrefix : "model.";

    public override MoEConfig ResolveLayout(MoEConfig config, IReadOnlyCollection<string> tensorNames)
    {
        bool nested = tensorNames.Any(n => n.StartsWith(LanguageModelPrefix, StringComparison.Ordinal));
        bool flat = tensorNames.Any(n => n.StartsWith("model.layers.", StringComparison.Ordinal));
        var resolved = nested && !flat ? config with { ModelPrefix = LanguageModelPrefix }
            : flat && !nested ? config with { ModelPrefix = "model." } : config;
        return base.ResolveLayout(resolved, tensorNames);
    }

    protected override IEnumerable<string> ModelPrefixes(MoEConfig config) =>
        config.ModelPrefix == LanguageModelPrefix ? [LanguageModelPrefix, "model."] : [config.ModelPrefix, LanguageModelPrefix];

    protected override TensorRoleInfo ClassifyOutsideLayers(string name, MoEConfig config)
    {
        if (name.StartsWith("model.visual.", StringComparison.Ordinal)) return new(TensorRole.Vision);
        if (!name.StartsWith("mtp.", StringComparison.Ordinal)) return TensorRoleInfo.Unknown;
        if (name.StartsWith("mtp.layers.", StringComparison.Ordinal) && TryParseIndex(name, "mtp.layers.".Length, out int k, out var rest))
            return ClassifyLayer(rest, config.NumLayers + k, true, config);
        // mtp.fc, mtp.norm, mtp.pre_fc_norm_embedding, mtp.pre_fc_norm_hidden: shared by the MTP layers, filed under the first.
        var (module, param) = SplitParam(name["mtp.".Length..]);
        bool isNorm = module.EndsWith("norm", StringComparison.Ordinal) || module.Contains("_norm_", StringComparison.Ordinal);
        return new(isNorm ? TensorRole.Norm : TensorRole.Mtp, config.NumLayers, InMtp: true, IsBias: param == "bias");
    }

    protected override string LayerPrefix(int layer, MoEConfig config) =>
        layer < config.NumLayers ? $"{config.ModelPrefix}layers.{layer}." : $"mtp.layers.{layer - config.NumLayers}.";
}
