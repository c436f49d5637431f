using MoECompress.Formats.Families;
using TorchSharp;
using static TorchSharp.torch;

namespace MoECompress.Compression.Model;

/// <summary>
/// A MoE router: weight [E, H], optional bias [E] and optional DeepSeek-V3 e_score_correction_bias [E], applied with
/// the exact rule of a <see cref="RouterSpec"/>. Owns its tensors.
/// </summary>
public sealed class MoERouter : IDisposable
{
    public MoERouter(RouterSpec spec, Tensor weight, Tensor? bias = null, Tensor? correctionBias = null)
    {
        if (weight.dim() != 2 || weight.shape[0] != spec.NumExperts)
            throw new ArgumentException($"router weight must be [{spec.NumExperts}, H], found [{string.Join(",", weight.shape)}]");
        if (bias is not null && (bias.dim() != 1 || bias.shape[0] != spec.NumExperts))
            throw new ArgumentException($"router bias must be [{spec.NumExperts}]");
        if (correctionBias is not null && (correctionBias.dim() != 1 || correctionBias.shape[0] != spec.NumExperts))
            throw new ArgumentException($"e_score_correction_bias must be [{spec.NumExperts}]");
        Spec = spec;
        Weight = weight;
        Bias = bias;
        CorrectionBias = correctionBias;
    }

    public RouterSpec Spec { get; }
    public Tensor Weight { get; }
    public Tensor? Bias { get; }
    public Tensor? CorrectionBias { get; }

    /// <summary>Routes tokens x [T, H].</summary>
    /// <param name="x">Block input (after post-attention norm), float32.</param>
    /// <param name="keptExperts">
    /// Optional simulation of pruning: experts flagged false are never chosen; with softmax scoring their logits are
    /// removed before the softmax (as if their router rows were deleted). Group structure is kept as is.
    /// </param>
    public MoERouting Route(Tensor x, IReadOnlyList<bool>? keptExperts = null)
    {
        using var logits = nn.functional.linear(x, Weight, Bias);
        return Select(logits, Spec, CorrectionBias, keptExperts);
    }

    /// <summary>Applies the routing rule of <paramref name="spec"/> to router logits [T, E]. Takes a copy of the logits.</summary>
    public static MoERouting Select(Tensor logits, RouterSpec spec, Tensor? correctionBias = null, IReadOnlyList<bool>? keptExperts = null)
    {
        using var scope = NewDisposeScope();
        var t = logits.shape[0];
        var e = logits.shape[1];
        if (e != spec.NumExperts) throw new ArgumentException($"router logits have {e} experts, spec says {spec.NumExperts}");

        Tensor? dropped = null;
        if (keptExperts is not null)
        {
            if (keptExperts.Count != e) throw new ArgumentException($"kept-expert mask has {keptExperts.Count} entries for {e} experts");
            var kept = keptExperts.Count(k => k);
            if (kept < spec.TopK) throw new ArgumentException($"only {kept} experts kept, top-k is {spec.TopK}");
            dropped = tensor(keptExperts.Select(k => !k).ToArray()).unsqueeze(0);
        }

        var z = logits.to(ScalarType.Float32);
        if (spec.SparseMixerJitterEps is { } jitter)
            return SparseMixer(z, spec.TopK, jitter, dropped);
        Tensor scores = spec.Scoring switch
        {
            RouterScoring.Softmax => (dropped is null ? z : z.FillWhere(dropped, double.NegativeInfinity)).softmax(-1),
            RouterScoring.Sigmoid => z.sigmoid(),
            _ => throw new InvalidOperationException($"unknown scoring {spec.Scoring}"),
        };

        var choice = scores;
        if (spec.UseCorrectionBias && correctionBias is not null)
            choice = scores.Plus(correctionBias.to(ScalarType.Float32).unsqueeze(0));
        if (dropped is not null)
            choice = choice.FillWhere(dropped, double.NegativeInfinity);

        if (spec.GroupSelection != RouterGroupSelection.None && spec.NumGroups > 1)
        {
            var g = spec.NumGroups;
            var grouped = choice.view(t, g, e / g);
            var groupScores = spec.GroupSelection == RouterGroupSelection.MaxPerGroup
                ? grouped.amax(new long[] { -1 })
                : grouped.topk(2, -1).values.sum(-1);
            var groupIdx = groupScores.topk(spec.TopKGroups, -1).indexes;
            var groupMask = zeros(t, g, ScalarType.Float32).scatter_(1, groupIdx, ones(t, spec.TopKGroups, ScalarType.Float32));
            var expertMask = groupMask.unsqueeze(-1).expand(t, g, e / g).reshape(t, e);
            choice = choice.FillWhere(expertMask.EqualTo(0), double.NegativeInfinity);
        }

        var topIdx = choice.topk(spec.TopK, -1).indexes;
        var weights = scores.gather(1, topIdx);
        // Explicit scalars held through the native calls: implicit double → Scalar temporaries can be finalized while
        // libtorch reads them ("Unknown scalar type", seen in the test suite here).
        using var scaling = spec.ScalingFactor.ToScalar();
        if (spec.Normalize)
            weights = weights.div(weights.sum(-1, keepdim: true).Plus(spec.NormalizeEpsilon));
        if (spec.ScalingFactor != 1.0)
            weights = weights.mul(scaling);

        return new MoERouting(
            z.clone().MoveToOuterDisposeScope(),
            scores.MoveToOuterDisposeScope(),
            topIdx.MoveToOuterDisposeScope(),
            weights.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// Phi-3.5-MoE sparsemixer as transformers runs it in eval mode, for float32 logits z [T, E] (the caller's scope
    /// owns the temporaries): per round, m = the largest logit not chosen yet; logits z with (m − z) / max(|z|, m) &gt;
    /// 2·eps are masked, as are the experts already chosen; the expert of m is chosen with weight = its probability in
    /// the softmax over what is left. Scores are the plain softmax of z. Dropped experts (simulated pruning) never take part.
    /// </summary>
    private static MoERouting SparseMixer(Tensor z, int topK, double jitterEps, Tensor? dropped)
    {
        using var threshold = (2 * jitterEps).ToScalar();
        var remaining = dropped is null ? z : z.FillWhere(dropped, double.NegativeInfinity);
        var scores = remaining.softmax(-1);
        var magnitude = z.abs();
        var chosen = new List<Tensor>(topK);
        var weights = new List<Tensor>(topK);
        for (var round = 0; round < topK; round++)
        {
            var (best, index) = remaining.max(-1, keepdim: true);
            var outside = best.sub(z).div(magnitude.maximum(best)).gt(threshold);
            var probabilities = remaining.FillWhere(outside, double.NegativeInfinity).softmax(-1);
            chosen.Add(index);
            weights.Add(probabilities.gather(1, index));
            remaining = remaining.scatter(1, index, ScalarOps.FullLike(index, double.NegativeInfinity, ScalarType.Float32));
        }
        return new MoERouting(
            z.clone().MoveToOuterDisposeScope(),
            scores.MoveToOuterDisposeScope(),
            cat(chosen, 1).MoveToOuterDisposeScope(),
            cat(weights, 1).MoveToOuterDisposeScope());
    }

    public void Dispose()
    {
        Weight.Dispose();
        Bias?.Dispose();
        CorrectionBias?.Dispose();
    }
}
