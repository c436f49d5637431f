using MoECompress.Compression.Model;
using MoECompress.Compression.Surgery;
using MoECompress.Formats.Families;
using static TorchSharp.torch;

namespace MoECompress.Compression.Merging;

/// <summary>
/// The MoE block a merge plan makes of one layer, for running in the engine before the merged checkpoint exists: the
/// merged experts (tensors of <see cref="MergedExpertWeights.Layer"/>), the unmerged ones and the shared experts
/// borrowed from the original block, and a router over the output experts whose rows follow <see cref="MergedRouterRows"/>.
/// Disposing releases only the router built here: every expert tensor belongs to the original block or to the merged weights.
/// </summary>
internal sealed class MergedMoEBlock : IDisposable
{
    private readonly MoERouter _router;

    private MergedMoEBlock(MoEBlock block, MoERouter router)
    {
        Block = block;
        _router = router;
    }

    /// <summary>The block (do not dispose it: it would dispose the experts it borrows).</summary>
    public MoEBlock Block { get; }

    /// <param name="original">The layer's block as stored.</param>
    /// <param name="merged">(output expert, projection) → merged weight, for every merged cluster.</param>
    /// <param name="clusters">The output experts in their order.</param>
    /// <param name="rule">How the merged experts' router rows are made.</param>
    public static MergedMoEBlock Build(MoEBlock original, IReadOnlyDictionary<(int Expert, ExpertProjection Projection), Tensor> merged,
        IReadOnlyList<ExpertCluster> clusters, RouterRowRule rule)
    {
        var experts = new List<GatedMlp>(clusters.Count);
        for (var k = 0; k < clusters.Count; k++)
        {
            var c = clusters[k];
            experts.Add(c.IsMerged
                ? new GatedMlp(merged[(k, ExpertProjection.Gate)], merged[(k, ExpertProjection.Up)], merged[(k, ExpertProjection.Down)],
                    original.Experts[c.Representative].Activation)
                : original.Experts[c.Members[0]]);
        }
        var router = original.Router;
        Tensor? weight = null, bias = null, correction = null;
        try
        {
            // Detached: the block may be built inside an observer's dispose scope and outlive it.
            weight = MergedRouterRows.Combine(router.Weight, clusters, rule).DetachFromDisposeScope();
            bias = router.Bias is null ? null : MergedRouterRows.Combine(router.Bias, clusters, rule).DetachFromDisposeScope();
            correction = router.CorrectionBias is null ? null : MergedRouterRows.Combine(router.CorrectionBias, clusters, rule).DetachFromDisposeScope();
            var built = new MoERouter(router.Spec with { NumExperts = clusters.Count }, weight, bias, correction);
            return new MergedMoEBlock(new MoEBlock(original.Layer, built, experts, original.SharedExpert, original.SharedExpertGate), built);
        }
        catch
        {
            weight?.Dispose();
            bias?.Dispose();
            correction?.Dispose();
            throw;
        }
    }

    /// <summary>Releases the router built for this block.</summary>
    public void Dispose() => _router.Dispose();
}
