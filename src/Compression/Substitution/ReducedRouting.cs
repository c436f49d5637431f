using MoECompress.Compression.Model;
using static TorchSharp.torch;

namespace MoECompress.Compression.Substitution;

/// <summary>
/// Which of each token's top-k experts are computed, and with what weight, when the last <c>aux</c> experts by
/// routing weight are replaced by compressed experts and/or the second one is skipped dynamically.
/// </summary>
/// <remarks>
/// <para>The router's top-k is sorted by weight (descending): the first m = k − aux are the main experts, the last aux
/// the auxiliary ones. Auxiliary weights are renormalised among themselves (w̃ₐ = wₐ / Σ_aux w) to average their
/// vectors. A skipped main expert gets weight 0 and is not run.</para>
/// <para>Weights of the computed experts follow the family's rule: when the router renormalises its top-k
/// (<see cref="RouterSpec.Normalize"/>: Mixtral, Qwen/OLMoE/DeepSeek with norm_topk_prob) they are renormalised over
/// the experts actually computed, keeping the router's total (and so DeepSeek's routed_scaling_factor); otherwise
/// (norm_topk_prob = false) each keeps its own routing weight. Either way the vectors of ones reproduce the model with
/// top-k lowered to m, as a stock runtime runs it (<c>--export reduced-topk</c>).</para>
/// </remarks>
public sealed class ReducedRouting : IDisposable
{
    private ReducedRouting(Tensor mainIndices, Tensor mainWeights, bool[] active, Tensor? auxIndices, Tensor? auxWeights)
    {
        MainIndices = mainIndices;
        MainWeights = mainWeights;
        Active = active;
        AuxIndices = auxIndices;
        AuxWeights = auxWeights;
    }

    /// <summary>Main experts [T, m] (int64), by weight descending.</summary>
    public Tensor MainIndices { get; }
    /// <summary>Effective weights of the main experts [T, m] (float32; 0 where skipped).</summary>
    public Tensor MainWeights { get; }
    /// <summary>Row-major [T, m]: false where the main expert is skipped.</summary>
    public bool[] Active { get; }
    /// <summary>Auxiliary experts [T, aux] (int64), or null when aux = 0.</summary>
    public Tensor? AuxIndices { get; }
    /// <summary>Auxiliary weights renormalised among themselves [T, aux], or null when aux = 0.</summary>
    public Tensor? AuxWeights { get; }
    public long TokenCount => MainIndices.shape[0];
    public int MainCount => (int)MainIndices.shape[1];
    /// <summary>Main expert calls skipped.</summary>
    public long SkippedCalls => Active.LongCount(a => !a);

    /// <summary>Splits a routing decision.</summary>
    /// <param name="routing">The router's decision for tokens x.</param>
    /// <param name="spec">The router's rule (for <see cref="RouterSpec.Normalize"/>).</param>
    /// <param name="aux">Auxiliary experts per token, 0 ≤ aux &lt; k.</param>
    /// <param name="x">Block input [T, H] (for the protection norm of <paramref name="skip"/>).</param>
    /// <param name="skip">Dynamic skipping of the second main expert, or null.</param>
    public static ReducedRouting Create(MoERouting routing, RouterSpec spec, int aux, Tensor x, ExpertSkipRule? skip)
    {
        using var scope = NewDisposeScope();
        var k = (int)routing.TopK;
        if (aux < 0 || aux >= k) throw new ArgumentOutOfRangeException(nameof(aux), aux, $"auxiliary experts must be between 0 and top-k − 1 = {k - 1}");
        var t = routing.TokenCount;
        var m = k - aux;
        var (sortedWeights, order) = routing.TopKWeights.sort(1, descending: true, stable: true);
        var sortedIndices = routing.TopKIndices.gather(1, order);
        var mainWeights = sortedWeights.narrow(1, 0, m);
        var mainIndices = sortedIndices.narrow(1, 0, m).contiguous();

        var active = Enumerable.Repeat(true, (int)(t * m)).ToArray();
        var effective = mainWeights;
        long protectedTokens = 0;
        if (skip is not null && m >= 2)
        {
            var ratio = mainWeights.select(1, 1) / mainWeights.select(1, 0).AtLeast(float.Epsilon);
            var norms = x.to(ScalarType.Float32).Squared().sum(1).sqrt();
            var isProtected = norms.GreaterOrEqual(skip.NormThreshold);
            var drop = ratio.LessThan(skip.Mu).logical_and(isProtected.logical_not());
            protectedTokens = isProtected.sum().item<long>();
            var dropped = drop.cpu().data<bool>().ToArray();
            for (var i = 0; i < dropped.Length; i++)
                if (dropped[i]) active[i * m + 1] = false;
            var keep = ones(t, m, ScalarType.Float32, x.device);
            keep.select(1, 1).FillWhere_(drop, 0.0);
            effective = mainWeights * keep;
        }
        if (spec.Normalize && (aux > 0 || skip is not null))
            effective = effective * (sortedWeights.sum(1, keepdim: true) / effective.sum(1, keepdim: true).AtLeast(float.Epsilon));

        Tensor? auxIndices = null, auxWeights = null;
        if (aux > 0)
        {
            auxIndices = sortedIndices.narrow(1, m, aux).contiguous();
            var w = sortedWeights.narrow(1, m, aux);
            auxWeights = w / w.sum(1, keepdim: true).AtLeast(float.Epsilon);
        }
        var result = new ReducedRouting(mainIndices.MoveToOuterDisposeScope(), effective.contiguous().MoveToOuterDisposeScope(), active,
            auxIndices?.MoveToOuterDisposeScope(), auxWeights?.MoveToOuterDisposeScope());
        skip?.Count(t, t * k, aux * t + result.SkippedCalls, protectedTokens);
        return result;
    }

    /// <summary>The rows <paramref name="rows"/> [R] (int64) of this routing (a mini-batch).</summary>
    public ReducedRouting Rows(Tensor rows)
    {
        using var scope = NewDisposeScope();
        var picked = rows.cpu().data<long>().ToArray();
        var m = MainCount;
        var active = new bool[picked.Length * m];
        for (var i = 0; i < picked.Length; i++)
            Array.Copy(Active, picked[i] * m, active, i * m, m);
        return new ReducedRouting(MainIndices.index_select(0, rows).MoveToOuterDisposeScope(),
            MainWeights.index_select(0, rows).MoveToOuterDisposeScope(), active,
            AuxIndices?.index_select(0, rows).MoveToOuterDisposeScope(), AuxWeights?.index_select(0, rows).MoveToOuterDisposeScope());
    }

    /// <summary>This routing with its tensors on <paramref name="device"/>.</summary>
    public ReducedRouting To(Device device) =>
        new(MainIndices.to(device), MainWeights.to(device), Active, AuxIndices?.to(device), AuxWeights?.to(device));

    public void Dispose()
    {
        MainIndices.Dispose();
        MainWeights.Dispose();
        AuxIndices?.Dispose();
        AuxWeights?.Dispose();
    }
}
