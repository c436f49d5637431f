using System.Text.Json.Nodes;

namespace MoECompress.Formats.Families;

/// <summary>
/// GPT-OSS (GptOssForCausalLM): every layer is MoE; router <c>mlp.router.weight</c> [E, H] + <c>bias</c> [E]
/// (top-k of the logits, softmax over the k); experts fused and transposed: <c>mlp.experts.gate_up_proj</c> [E, H, 2I]
/// with gate and up interleaved along the last dimension (gate = even, up = odd) + <c>gate_up_proj_bias</c> [E, 2I],
/// <c>mlp.experts.down_proj</c> [E, I, H] + <c>down_proj_bias</c> [E, H]. The released checkpoints store the two weights
/// as MXFP4 <c>*_blocks</c> U8 [E, out, in/32, 16] and <c>*_scales</c> U8 [E, out, in/32] instead. Attention has biases
/// and per-head sinks <c>self_attn.sinks</c>; layers alternate sliding-window and full attention.
/// </summary>
public sealed class GptOssFamily : MoEFamilyBase
{
    public override string Name => "gpt-oss";
    public override IReadOnlyList<string> Architectures { get; } = ["GptOssForCausalLM"];
    public override IReadOnlyList<string> ModelTypes { get; } = ["gpt_oss"];

    public override MoEConfig ReadConfig(JsonObject config, string configPath)
    {
        var r = new ConfigReader(config, configPath);
        var expertKey = r.FirstPresent("num_local_experts", "num_experts") ?? "num_local_experts";
        var topKKey = r.FirstPresent("num_experts_per_tok", "experts_per_token") ?? "num_experts_per_tok";
        var quant = config["quantization_config"] as JsonObject;
        bool mxfp4 = quant is not null && new ConfigReader(quant, configPath).String("quant_method") == "mxfp4";
        return ReadEveryLayerMoE(r, config, expertKey, topKKey, normTopK: true) with
        {
            HasRouterBias = true,
            ExpertCountKeys = PresentKeys(r, "num_local_experts", "num_experts"),
            TopKKeys = PresentKeys(r, "num_experts_per_tok", "experts_per_token"),
            FusedExperts = true,
            Mxfp4Experts = mxfp4,
        };
    }

    /// <summary>MXFP4 or not is decided by the tensors: dequantized releases keep quantization_config out, or forget to remove it.</summary>
    public override MoEConfig ResolveLayout(MoEConfig config, IReadOnlyCollection<string> tensorNames)
    {
        bool blocks = tensorNames.Any(n => n.EndsWith(".mlp.experts.gate_up_proj_blocks", StringComparison.Ordinal));
        bool plain = tensorNames.Any(n => n.EndsWith(".mlp.experts.gate_up_proj", StringComparison.Ordinal));
        if (blocks && !plain) return config with { Mxfp4Experts = true };
        if (plain && !blocks) return config with { Mxfp4Experts = false };
        return config;
    }

    protected override TensorRoleInfo? ClassifyMoEBlock(string rest, int layer, bool inMtp, MoEConfig config)
    {
        if (rest == "mlp.router.weight") return new(TensorRole.RouterWeight, layer, InMtp: inMtp);
        if (rest == "mlp.router.bias") return new(TensorRole.RouterBias, layer, InMtp: inMtp, IsBias: true);
        if (!rest.StartsWith("mlp.experts.", StringComparison.Ordinal)) return null;
        var leaf = rest["mlp.experts.".Length..];
        ExpertProjection proj;
        if (leaf.StartsWith("gate_up_proj", StringComparison.Ordinal)) { proj = ExpertProjection.GateUp; leaf = leaf["gate_up_proj".Length..]; }
        else if (leaf.StartsWith("down_proj", StringComparison.Ordinal)) { proj = ExpertProjection.Down; leaf = leaf["down_proj".Length..]; }
        else return null;
        return leaf switch
        {
            "" or "_blocks" => new(TensorRole.RoutedExpert, layer, null, proj, Fused: true, InMtp: inMtp),
            "_bias" => new(TensorRole.RoutedExpert, layer, null, proj, Fused: true, InMtp: inMtp, IsBias: true),
            "_scales" => new(TensorRole.RoutedExpert, layer, null, proj, Fused: true, InMtp: inMtp, QuantScale: true),
            _ => null,
        };
    }

    protected override string RouterModule => "mlp.router.weight";
    public override string? RouterBiasName(int layer, MoEConfig config) => $"{LayerPrefix(layer, config)}mlp.router.bias";

    public override ExpertTensorRef ExpertTensor(int layer, int expert, ExpertProjection projection, MoEConfig config)
    {
        var experts = $"{LayerPrefix(layer, config)}mlp.experts.";
        var stem = projection switch
        {
            ExpertProjection.Gate or ExpertProjection.Up => experts + "gate_up_proj",
            ExpertProjection.Down => experts + "down_proj",
            _ => throw GateUpNotAllowed(),
        };
        var layout = config.Mxfp4Experts ? ExpertLayout.FusedMxfp4 : ExpertLayout.FusedTransposed;
        var name = config.Mxfp4Experts ? stem + "_blocks" : stem;
        var scales = config.Mxfp4Experts ? stem + "_scales" : null;
        long i = config.ExpertIntermediateSize;
        return projection switch
        {
            ExpertProjection.Gate => new(name, layout, expert, 0, i, Interleaved: true, BiasName: stem + "_bias", ScalesName: scales),
            ExpertProjection.Up => new(name, layout, expert, 1, i, Interleaved: true, BiasName: stem + "_bias", ScalesName: scales),
            _ => new(name, layout, expert, BiasName: stem + "_bias", ScalesName: scales),
        };
    }
}
