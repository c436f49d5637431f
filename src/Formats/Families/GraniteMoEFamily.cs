using System.Text.Json.Nodes;

namespace MoECompress.Formats.Families;

/// <summary>
/// GraniteMoE (GraniteMoeForCausalLM, and GraniteMoeSharedForCausalLM with a shared MLP): every layer is MoE; router
/// <c>block_sparse_moe.router.layer.weight</c> [E, H]; experts always fused: <c>block_sparse_moe.input_linear.weight</c>
/// [E, 2I, H] (gate rows first, then up) and <c>block_sparse_moe.output_linear.weight</c> [E, H, I]; the shared MLP is
/// <c>shared_mlp.input_linear/output_linear</c>. Softmax over the top-k logits (i.e. renormalised).
/// </summary>
public sealed class GraniteMoEFamily : MoEFamilyBase
{
    public override string Name => "granitemoe";
    public override IReadOnlyList<string> Architectures { get; } = ["GraniteMoeForCausalLM", "GraniteMoeSharedForCausalLM"];
    public override IReadOnlyList<string> ModelTypes { get; } = ["granitemoe", "granitemoeshared"];

    public override MoEConfig ReadConfig(JsonObject config, string configPath)
    {
        var r = new ConfigReader(config, configPath);
        int sharedI = r.Int("shared_intermediate_size", 0);
        return ReadEveryLayerMoE(r, config, "num_local_experts", "num_experts_per_tok", normTopK: true) with
        {
            NumSharedExperts = sharedI > 0 ? 1 : 0,
            SharedExpertIntermediateSize = sharedI,
            FusedExperts = true,
        };
    }

    /// <summary>GraniteMoE experts are always fused.</summary>
    public override MoEConfig ResolveLayout(MoEConfig config, IReadOnlyCollection<string> tensorNames) => config;

    protected override TensorRoleInfo? ClassifyMoEBlock(string rest, int layer, bool inMtp, MoEConfig config) => rest switch
    {
        "block_sparse_moe.router.layer.weight" => new(TensorRole.RouterWeight, layer, InMtp: inMtp),
        "block_sparse_moe.input_linear.weight" => new(TensorRole.RoutedExpert, layer, null, ExpertProjection.GateUp, Fused: true, InMtp: inMtp),
        "block_sparse_moe.output_linear.weight" => new(TensorRole.RoutedExpert, layer, null, ExpertProjection.Down, Fused: true, InMtp: inMtp),
        "shared_mlp.input_linear.weight" => new(TensorRole.SharedExpert, layer, null, ExpertProjection.GateUp, InMtp: inMtp),
        "shared_mlp.output_linear.weight" => new(TensorRole.SharedExpert, layer, null, ExpertProjection.Down, InMtp: inMtp),
        _ => null,
    };

    protected override string RouterModule => "block_sparse_moe.router.layer.weight";

    public override ExpertTensorRef ExpertTensor(int layer, int expert, ExpertProjection projection, MoEConfig config)
    {
        var block = $"{LayerPrefix(layer, config)}block_sparse_moe.";
        long i = config.ExpertIntermediateSize;
        return projection switch
        {
            ExpertProjection.Gate => new(block + "input_linear.weight", ExpertLayout.Fused, expert, 0, i),
            ExpertProjection.Up => new(block + "input_linear.weight", ExpertLayout.Fused, expert, i, i),
            ExpertProjection.Down => new(block + "output_linear.weight", ExpertLayout.Fused, expert),
            _ => throw GateUpNotAllowed(),
        };
    }
}
