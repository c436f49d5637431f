using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MoECompress.Compression.Training;

/// <summary>
/// The DeepSeek-V3 MoE block as Hugging Face DeepseekV3MoE / DeepseekV3TopkRouter compute it with n_group = topk_group = 1
/// (as Kimi K2): router logits = x·Gᵀ in fp32, scores s = sigmoid(logits); the top-k experts are chosen by
/// s + e_score_correction_bias, their weights are the unbiased scores renormalised to sum 1 (norm_topk_prob, +1e-20) times
/// routed_scaling_factor; routed experts (SiLU-gated, stacked as <see cref="TrainingSparseMoeBlock"/>'s) add up with
/// those weights, plus the shared experts (one fused MLP of n_shared_experts × moe_intermediate_size) on every token.
/// <para>The correction bias is a buffer, not a parameter: the optimiser never sees it; <see cref="UpdateCorrectionBias"/>
/// moves it after each step (DeepSeek-V3's auxiliary-loss-free balancing).</para>
/// </summary>
public sealed class TrainingDeepseekMoeBlock : nn.Module
{
    private readonly int topK;
    private readonly double routedScaling;
    private readonly bool bf16;

    public Parameter gate;
    /// <summary>[E] float32, zeros at the start (HF <c>mlp.gate.e_score_correction_bias</c>).</summary>
    public Tensor e_score_correction_bias;
    public Parameter gate_proj, up_proj, down_proj;
    public TrainingGatedMlp? shared_experts;

    public TrainingDeepseekMoeBlock(string name, ReferenceModelOptions o, Func<long[], Tensor> init, Func<long[], Tensor> initOutput)
        : base(name)
    {
        topK = o.TopK;
        routedScaling = o.RoutedScalingFactor;
        bf16 = o.Bf16Matmuls;
        int e = o.Experts, h = o.HiddenSize, i = o.IntermediateSize;
        gate = new Parameter(init([e, h]));
        e_score_correction_bias = torch.zeros(e, dtype: ScalarType.Float32);
        gate_proj = new Parameter(init([e, i, h]));
        up_proj = new Parameter(init([e, i, h]));
        down_proj = new Parameter(initOutput([e, h, i]));
        if (o.SharedExperts > 0)
            shared_experts = new TrainingGatedMlp("shared_experts", h, o.SharedExperts * i, bf16, init, initOutput);
        RegisterComponents();
    }

    /// <summary>The routing of tokens [N, H]: logits [N, E], sigmoid scores [N, E], chosen experts [N, k], weights [N, k].</summary>
    public (Tensor Logits, Tensor Scores, Tensor Selected, Tensor Weights) Route(Tensor tokens)
    {
        using var scope = NewDisposeScope();
        // The router stays in fp32: its decisions are discrete and bf16 ties would change them.
        var logits = nn.functional.linear(tokens.to(ScalarType.Float32), gate);
        var scores = logits.sigmoid();
        Tensor selected;
        using (no_grad())
            selected = scores.detach().Plus(e_score_correction_bias.unsqueeze(0)).topk(topK, dim: -1).indexes;
        var weights = scores.gather(1, selected);
        weights = weights / weights.sum(-1, keepdim: true).Plus(1e-20);
        weights = weights.Times(routedScaling);
        return (logits.MoveToOuterDisposeScope(), scores.MoveToOuterDisposeScope(), selected.MoveToOuterDisposeScope(),
            weights.MoveToOuterDisposeScope());
    }

    public SparseMoeBlockOutput Forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0], t = x.shape[1], h = x.shape[2];
        var tokens = x.reshape(b * t, h);
        var (logits, scores, selected, weights) = Route(tokens);
        var output = TrainingSparseMoeBlock.RoutedExperts(tokens, selected, weights.to(tokens.dtype), gate_proj, up_proj, down_proj, bf16);
        if (shared_experts is not null) output = output.Plus(shared_experts.forward(tokens));
        return new SparseMoeBlockOutput(output.view(b, t, h).MoveToOuterDisposeScope(), logits.MoveToOuterDisposeScope(),
            scores.MoveToOuterDisposeScope(), selected.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// bias_i += <paramref name="rate"/> · sign(mean load − load_i), load_i = how often expert i is among the
    /// <paramref name="selected"/> [N, k] experts. Integer counts make it exact: equal inputs give equal biases.
    /// </summary>
    public void UpdateCorrectionBias(Tensor selected, double rate)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        long experts = e_score_correction_bias.shape[0];
        var load = torch.bincount(selected.flatten(), minlength: experts).to(ScalarType.Float64);
        var meanLoad = (double)selected.numel() / experts;
        var step = (load.neg().Plus(meanLoad)).sign().to(ScalarType.Float32).Times(rate);
        e_score_correction_bias.Plus_(step);
    }

    /// <summary>The block's tensors under their Hugging Face names below <paramref name="prefix"/> ("model.layers.N.mlp.").</summary>
    public IEnumerable<(string Name, Tensor Tensor)> NamedHuggingFaceTensors(string prefix)
    {
        yield return (prefix + "gate.weight", gate);
        yield return (prefix + "gate.e_score_correction_bias", e_score_correction_bias);
        for (int e = 0; e < gate.shape[0]; e++)
        {
            yield return (prefix + $"experts.{e}.gate_proj.weight", gate_proj[e]);
            yield return (prefix + $"experts.{e}.up_proj.weight", up_proj[e]);
            yield return (prefix + $"experts.{e}.down_proj.weight", down_proj[e]);
        }
        if (shared_experts is not null)
            foreach (var nt in shared_experts.NamedHuggingFaceTensors(prefix + "shared_experts.")) yield return nt;
    }
}
