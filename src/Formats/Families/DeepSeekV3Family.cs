namespace MoECompress.Formats.Families;

/// <summary>
/// DeepSeek-V3 / R1 (DeepseekV3ForCausalLM): the DeepSeek MoE layout with MLA attention, sigmoid scoring, the
/// selection-only <c>mlp.gate.e_score_correction_bias</c> [E] (F32) of the noaux_tc top-k method, group-limited routing
/// (n_group/topk_group), routed_scaling_factor, and the MTP layer <c>model.layers.{num_hidden_layers}</c>.
/// </summary>
public sealed class DeepSeekV3Family : DeepSeekFamilyBase
{
    public override string Name => "deepseek-v3";
    public override IReadOnlyList<string> Architectures { get; } = ["DeepseekV3ForCausalLM"];
    public override IReadOnlyList<string> ModelTypes { get; } = ["deepseek_v3"];
    protected override string DefaultScoring => "sigmoid";

    /// <summary>transformers' DeepSeek-V3 router always has the bias; the remote code only with topk_method noaux_tc (its default).</summary>
    protected override bool HasCorrectionBias(ConfigReader r) => (r.String("topk_method") ?? "noaux_tc") == "noaux_tc";
}
