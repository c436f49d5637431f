using static TorchSharp.torch;

namespace MoECompress.Compression.Training;

/// <summary>
/// Router regularisers of sparse MoE training.
/// <para>Load balancing (Switch Transformer / Mixtral): E · Σᵢ fᵢ · Pᵢ, where fᵢ is the fraction of the N·k top-k
/// selections that went to expert i (no gradient) and Pᵢ the mean router probability of expert i over the N tokens.
/// It equals 1 when routing is perfectly balanced and grows to E when one expert takes everything. Hugging Face's
/// <c>load_balancing_loss_func</c> normalises fᵢ per top-k slot instead, which gives k times this value.</para>
/// <para>Sequence-wise balance loss (DeepSeek-V3, the complement of its auxiliary-loss-free bias): per sequence of T
/// tokens, Σᵢ fᵢ·Pᵢ with fᵢ = E/(k·T) · (selections of expert i, no gradient) and Pᵢ = mean over the tokens of the
/// expert's score divided by the token's score sum; averaged over the sequences. 1 when balanced, E/k at worst.</para>
/// <para>Router z-loss (ST-MoE): mean over tokens of logsumexp(router logits)².</para>
/// </summary>
public static class LoadBalancingLoss
{
    /// <summary>E · Σ fᵢ Pᵢ for router probabilities [N, E] and the selected expert ids [N, k]; a scalar tensor.</summary>
    public static Tensor Compute(Tensor routerProbabilities, Tensor selectedExperts)
    {
        using var scope = NewDisposeScope();
        long experts = routerProbabilities.shape[^1];
        var flat = selectedExperts.flatten();
        Tensor fraction;
        using (no_grad())
        {
            var counts = nn.functional.one_hot(flat, experts).to(ScalarType.Float32).sum(0L);
            fraction = counts.Over(flat.shape[0]);
        }
        var meanProbability = routerProbabilities.to(ScalarType.Float32).mean([0L]);
        return ((fraction * meanProbability).sum().Times(experts)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The sequence-wise balance loss for router scores [N, E] (DeepSeek-V3: sigmoid scores) and the selected expert ids
    /// [N, k] of <paramref name="sequences"/> batch-major sequences (N = sequences·T); a scalar tensor.
    /// </summary>
    public static Tensor SequenceWise(Tensor scores, Tensor selectedExperts, long sequences)
    {
        using var scope = NewDisposeScope();
        long experts = scores.shape[^1], topK = selectedExperts.shape[^1];
        long tokens = scores.shape[0] / sequences;
        var s = scores.to(ScalarType.Float32).view(sequences, tokens, experts);
        var meanShare = (s / s.sum(-1, keepdim: true)).mean([1L]);
        Tensor fraction;
        using (no_grad())
        {
            var counts = nn.functional.one_hot(selectedExperts.reshape(sequences, tokens * topK), experts).to(ScalarType.Float32).sum(1L);
            fraction = counts.Times((double)experts / (topK * tokens));
        }
        return (fraction * meanShare).sum(-1L).mean().MoveToOuterDisposeScope();
    }

    /// <summary>mean over tokens of logsumexp(logits)² for router logits [N, E]; a scalar tensor.</summary>
    public static Tensor RouterZLoss(Tensor routerLogits)
    {
        using var scope = NewDisposeScope();
        var lse = routerLogits.to(ScalarType.Float32).logsumexp(-1);
        return lse.Power(2).mean().MoveToOuterDisposeScope();
    }
}
