using MoECompress.Formats.Families;

namespace MoECompress.Compression.Model;

/// <summary>How group-limited routing scores a group of experts before choosing experts inside the kept groups.</summary>
public enum RouterGroupSelection
{
    /// <summary>No group limit: top-k over all experts.</summary>
    None,
    /// <summary>DeepSeek-V2 <c>group_limited_greedy</c>: group score = the best expert score in the group.</summary>
    MaxPerGroup,
    /// <summary>DeepSeek-V3 <c>noaux_tc</c>: group score = sum of the two best (bias-corrected) scores in the group.</summary>
    SumOfTopTwoPerGroup,
}

/// <summary>
/// Exactly how a MoE router turns logits into the chosen experts and their weights:
/// scores = softmax or sigmoid of the logits; selection over scores (+ correction bias for DeepSeek-V3), limited to the
/// best <see cref="TopKGroups"/> of <see cref="NumGroups"/> groups when <see cref="GroupSelection"/> is set; weights =
/// the unbiased scores of the chosen experts, divided by their sum (+ <see cref="NormalizeEpsilon"/>) when
/// <see cref="Normalize"/>, times <see cref="ScalingFactor"/>.
/// </summary>
public sealed record RouterSpec
{
    public required int NumExperts { get; init; }
    public required int TopK { get; init; }
    public required RouterScoring Scoring { get; init; }
    public RouterGroupSelection GroupSelection { get; init; } = RouterGroupSelection.None;
    public int NumGroups { get; init; } = 1;
    public int TopKGroups { get; init; } = 1;
    /// <summary>Add the layer's e_score_correction_bias to the scores for selection (never to the weights).</summary>
    public bool UseCorrectionBias { get; init; }
    /// <summary>Renormalise the chosen weights to sum to one.</summary>
    public required bool Normalize { get; init; }
    /// <summary>Added to the denominator when normalising (DeepSeek adds 1e-20; Mixtral/Qwen add nothing).</summary>
    public double NormalizeEpsilon { get; init; }
    /// <summary>Final multiplier of the weights (DeepSeek routed_scaling_factor as the runtime applies it; 1 otherwise).</summary>
    public double ScalingFactor { get; init; } = 1.0;
    /// <summary>
    /// Phi-3.5-MoE sparsemixer (inference form) with this jitter epsilon (config router_jitter_noise); null for the
    /// plain top-k rule. Round r picks the best logit m not yet chosen; its weight is its probability in a softmax over
    /// the remaining logits z with (m − z) / max(|z|, m) ≤ 2·eps. No normalisation or scaling follows.
    /// </summary>
    public double? SparseMixerJitterEps { get; init; }

    /// <summary>Checks the invariants the router relies on; throws InvalidConfig naming the problem.</summary>
    public void Validate()
    {
        string? problem = null;
        if (NumExperts <= 0) problem = $"expert count must be positive, found {NumExperts}";
        else if (TopK <= 0 || TopK > NumExperts) problem = $"top-k {TopK} must be between 1 and the expert count {NumExperts}";
        else if (GroupSelection != RouterGroupSelection.None)
        {
            if (NumGroups <= 0 || NumExperts % NumGroups != 0) problem = $"n_group {NumGroups} must divide the expert count {NumExperts}";
            else if (TopKGroups <= 0 || TopKGroups > NumGroups) problem = $"topk_group {TopKGroups} must be between 1 and n_group {NumGroups}";
            else if (TopKGroups * (NumExperts / NumGroups) < TopK) problem = $"topk_group {TopKGroups} groups of {NumExperts / NumGroups} experts hold fewer than top-k {TopK} experts";
            else if (GroupSelection == RouterGroupSelection.SumOfTopTwoPerGroup && NumExperts / NumGroups < 2) problem = "noaux_tc group scoring needs at least 2 experts per group";
        }
        if (problem is null && SparseMixerJitterEps is not null && (Scoring != RouterScoring.Softmax || GroupSelection != RouterGroupSelection.None || UseCorrectionBias))
            problem = "sparsemixer routing works on softmax logits without groups or correction bias";
        if (problem is not null)
            throw new Formats.Errors.MoeCompressException(Formats.Errors.ErrorKind.InvalidConfig, $"router: {problem}");
    }
}
