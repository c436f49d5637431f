using MoECompress.Compression.Surgery;
using static TorchSharp.torch;

namespace MoECompress.Compression.Merging;

/// <summary>
/// The router parameters of a merged layer, as <see cref="Surgery.ExpertSurgery"/> writes them: one row (and one router
/// bias / e_score_correction_bias entry) per cluster, either the representative member's or Σ_m w_m · row_m with the
/// cluster's normalised merge weights.
/// </summary>
public static class MergedRouterRows
{
    /// <summary>
    /// The [E', E] matrix C whose product with a per-expert parameter ([E, H] router weight or [E] bias) gives the merged
    /// layer's parameter: C[k, m] = w_m for the members of cluster k (weighted), or 1 at its representative.
    /// </summary>
    public static Tensor CombinationMatrix(IReadOnlyList<ExpertCluster> clusters, int experts, RouterRowRule rule)
    {
        ArgumentNullException.ThrowIfNull(clusters);
        var c = new float[clusters.Count * experts];
        for (var k = 0; k < clusters.Count; k++)
        {
            var cluster = clusters[k];
            if (rule == RouterRowRule.Representative || !cluster.IsMerged)
                c[k * experts + cluster.Representative] = 1f;
            else
                for (var i = 0; i < cluster.Members.Count; i++)
                    c[k * experts + cluster.Members[i]] = (float)cluster.Weights[i];
        }
        return tensor(c, new long[] { clusters.Count, experts }, ScalarType.Float32);
    }

    /// <summary>Applies <see cref="CombinationMatrix"/> to a router weight [E, H] or a bias [E]; returns a new float32 tensor.</summary>
    public static Tensor Combine(Tensor perExpert, IReadOnlyList<ExpertCluster> clusters, RouterRowRule rule)
    {
        ArgumentNullException.ThrowIfNull(perExpert);
        using var scope = NewDisposeScope();
        var e = (int)perExpert.shape[0];
        var c = CombinationMatrix(clusters, e, rule).to(ScalarType.Float64);
        var values = perExpert.to(ScalarType.Float64);
        var result = perExpert.dim() == 1 ? c.matmul(values.unsqueeze(1)).squeeze(1) : c.matmul(values);
        return result.to(ScalarType.Float32).MoveToOuterDisposeScope();
    }
}
