using MoECompress.Compression.Substitution;
using TorchSharp;
using static TorchSharp.torch;

namespace MoECompress.Compression.Model;

/// <summary>
/// A sparse MoE block: router, routed experts, optional shared experts (Qwen2-MoE: one shared expert scaled by
/// sigmoid(shared_expert_gate(x)); DeepSeek: shared experts summed without gate). Tokens are dispatched by a counting
/// sort over the chosen expert ids: each expert runs only on the tokens routed to it and its weighted output is
/// accumulated with index_add_. Owns its weights.
/// </summary>
public sealed class MoEBlock : IDisposable
{
    public MoEBlock(int layer, MoERouter router, IReadOnlyList<GatedMlp> experts, GatedMlp? sharedExpert = null, Tensor? sharedExpertGate = null)
    {
        if (experts.Count != router.Spec.NumExperts)
            throw new ArgumentException($"layer {layer}: {experts.Count} experts for a router over {router.Spec.NumExperts}");
        if (sharedExpertGate is not null && sharedExpert is null)
            throw new ArgumentException($"layer {layer}: a shared expert gate needs a shared expert");
        Layer = layer;
        Router = router;
        Experts = experts;
        SharedExpert = sharedExpert;
        SharedExpertGate = sharedExpertGate;
    }

    public int Layer { get; }
    public MoERouter Router { get; }
    public IReadOnlyList<GatedMlp> Experts { get; }
    /// <summary>Shared expert(s) as one MLP (DeepSeek stores n_shared_experts fused into one intermediate).</summary>
    public GatedMlp? SharedExpert { get; }
    /// <summary>Qwen2-MoE shared_expert_gate weight [1, H]; null when the shared output is added ungated.</summary>
    public Tensor? SharedExpertGate { get; }
    /// <summary>Compressed experts (substituted checkpoints): the last Aux experts of each token are replaced by these vectors. Owned.</summary>
    public CompressedExpertVectors? CompressedExperts { get; init; }
    /// <summary>Dynamic skipping of the second expert (<c>eval --skip-plan</c>); not owned.</summary>
    public ExpertSkipRule? SkipRule { get; init; }

    /// <summary>Block output for tokens x [T, H].</summary>
    public Tensor Forward(Tensor x, MoEForwardOptions? options = null) => Forward(x, options, null, null);

    /// <summary>Block output for tokens x [T, H], reporting to <paramref name="observer"/> when given.</summary>
    /// <param name="x">Post-attention-normed hidden states [T, H].</param>
    /// <param name="options">What-if settings; null for the model as is.</param>
    /// <param name="observer">Receives <see cref="ILayerObserver.OnExpert"/> and <see cref="ILayerObserver.OnMoEBlock"/>.</param>
    /// <param name="batch">Where the rows of x come from (required with an observer; defaults to one sequence of T tokens).</param>
    public Tensor Forward(Tensor x, MoEForwardOptions? options, ILayerObserver? observer, MicroBatch? batch)
    {
        using var scope = NewDisposeScope();
        if (x.dim() != 2) throw new ArgumentException("MoE block input must be [T, H]");
        var t = x.shape[0];
        var k = Router.Spec.TopK;
        batch ??= new MicroBatch(new[] { 0 }, (int)t);
        var routing = Router.Route(x, options?.KeptExperts);
        if (CompressedExperts is not null || SkipRule is not null)
            return ForwardReduced(x, routing, options, observer, batch).MoveToOuterDisposeScope();

        // Counting sort of (token, slot) pairs by expert id: tokens stay ascending within each expert.
        var numExperts = Experts.Count;
        var dispatch = ExpertDispatch.Sort(routing.TopKIndices.reshape(-1).cpu().data<long>().ToArray(), numExperts);

        var flatWeights = routing.TopKWeights.reshape(-1);
        var routed = zeros(t, x.shape[1], x.dtype, x.device);
        using var one = 1.ToScalar();
        for (var e = 0; e < numExperts; e++)
        {
            if (dispatch.Count(e) == 0) continue;
            using var expertScope = NewDisposeScope();
            var slots = dispatch.Slots(e);
            var slotTensor = tensor(slots, ScalarType.Int64, x.device);
            var rows = tensor(slots.Select(s => s / k).ToArray(), ScalarType.Int64, x.device);
            var gates = flatWeights.index_select(0, slotTensor);
            var xin = x.index_select(0, rows);
            var expert = options?.ExpertReplacements is { } repl && repl.TryGetValue(e, out var r) ? r : Experts[e];
            var (h, y) = expert.ForwardWithIntermediate(xin);
            if (observer is not null)
            {
                var ranks = tensor(slots.Select(s => s % k).ToArray(), ScalarType.Int64, x.device);
                observer.OnExpert(new ExpertActivation(Layer, e, batch, routing, rows, ranks, xin, h, y, gates));
            }
            routed.index_add_(0, rows, y * gates.unsqueeze(1), one);
        }

        return Finish(x, routing, routed, options, observer, batch).MoveToOuterDisposeScope();
    }

    /// <summary>Adds the shared experts, reports the block to the observer and releases the routing.</summary>
    private Tensor Finish(Tensor x, MoERouting routing, Tensor routed, MoEForwardOptions? options, ILayerObserver? observer, MicroBatch batch)
    {
        Tensor? shared = null;
        if (SharedExpert is not null && (options?.IncludeSharedExperts ?? true))
        {
            shared = SharedExpert.Forward(x);
            if (SharedExpertGate is not null)
                shared = nn.functional.linear(x, SharedExpertGate).sigmoid() * shared;
        }
        var output = shared is null ? routed.clone() : routed.Plus(shared);
        observer?.OnMoEBlock(new MoEBlockActivation(this, batch, x, routing, routed, shared, output));
        routing.Dispose();
        return output;
    }

    /// <summary>Compressed experts and/or dynamic skipping: only each token's main experts run (see <see cref="ReducedRouting"/>).</summary>
    private Tensor ForwardReduced(Tensor x, MoERouting routing, MoEForwardOptions? options, ILayerObserver? observer, MicroBatch batch)
    {
        using var reduced = ReducedRouting.Create(routing, Router.Spec, CompressedExperts?.Aux ?? 0, x, SkipRule);
        var experts = options?.ExpertReplacements is { } repl
            ? Experts.Select((e, i) => repl.TryGetValue(i, out var r) ? r : e).ToList()
            : Experts;
        CompressedMoEForward.ExpertCallback? onExpert = observer is null ? null
            : (e, rows, ranks, xin, h, y, gates) => observer.OnExpert(new ExpertActivation(Layer, e, batch, routing, rows, ranks, xin, h, y, gates));
        var routed = CompressedMoEForward.Routed(x, experts, reduced, CompressedExperts, onExpert);
        return Finish(x, routing, routed, options, observer, batch);
    }

    public void Dispose()
    {
        Router.Dispose();
        foreach (var e in Experts) e.Dispose();
        SharedExpert?.Dispose();
        SharedExpertGate?.Dispose();
        CompressedExperts?.Dispose();
    }
}
