using MoECompress.Compression.Model;
using static TorchSharp.torch;

namespace MoECompress.Compression.Substitution;

/// <summary>
/// The routed part of a MoE block when only the main experts of each token run (<see cref="ReducedRouting"/>): each
/// main expert m computes down_m(act(gate_m(x ⊙ c̄1)) ⊙ up_m(x ⊙ c̄3) ⊙ c̄2) times its effective weight, where
/// c̄ = Σ_aux w̃ₐ cₐ averages the auxiliary experts' vectors with their renormalised weights. Tokens are dispatched by
/// a counting sort over the computed (token, expert) pairs, as in <see cref="MoEBlock"/>. Differentiable in the vectors
/// (what <see cref="CompressedExpertTrainer"/> trains) and used unchanged by the engine.
/// </summary>
public static class CompressedMoEForward
{
    /// <summary>One computed expert's tokens: called before its output is accumulated.</summary>
    public delegate void ExpertCallback(int expert, Tensor rows, Tensor ranks, Tensor input, Tensor intermediate, Tensor output, Tensor gates);

    /// <summary>Routed output [T, H] for block input x [T, H].</summary>
    /// <param name="x">Block input.</param>
    /// <param name="experts">The layer's routed experts (replacements already applied).</param>
    /// <param name="routing">Main and auxiliary experts per token.</param>
    /// <param name="vectors">The layer's vectors; null runs the main experts unmodulated (needs aux = 0 or plain top-k lowering).</param>
    /// <param name="onExpert">Optional observer of each computed expert.</param>
    public static Tensor Routed(Tensor x, IReadOnlyList<GatedMlp> experts, ReducedRouting routing,
        CompressedExpertVectors? vectors, ExpertCallback? onExpert = null) =>
        Routed(x, experts, routing, vectors?.GateInput, vectors?.Intermediate, vectors?.UpInput, onExpert);

    /// <summary>As above with the three vector tensors given separately ([E, H], [E, I], [E, H]; may require grad).</summary>
    public static Tensor Routed(Tensor x, IReadOnlyList<GatedMlp> experts, ReducedRouting routing,
        Tensor? gateInput, Tensor? intermediate, Tensor? upInput, ExpertCallback? onExpert = null)
    {
        using var scope = NewDisposeScope();
        var t = x.shape[0];
        var m = routing.MainCount;
        var modulated = gateInput is not null && routing.AuxIndices is not null;
        Tensor? c1 = null, c2 = null, c3 = null;
        if (modulated)
        {
            var auxIdx = routing.AuxIndices!.reshape(-1);
            var auxW = routing.AuxWeights!.unsqueeze(-1);
            var aux = routing.AuxIndices.shape[1];
            Tensor Mix(Tensor c) => (c.index_select(0, auxIdx).view(t, aux, c.shape[1]) * auxW).sum(1);
            c1 = Mix(gateInput!);
            c2 = Mix(intermediate!);
            c3 = Mix(upInput!);
        }

        var dispatch = ExpertDispatch.Sort(routing.MainIndices.reshape(-1).cpu().data<long>().ToArray(), experts.Count, routing.Active);

        var flatWeights = routing.MainWeights.reshape(-1);
        var routed = zeros(t, x.shape[1], x.dtype, x.device);
        for (var e = 0; e < experts.Count; e++)
        {
            if (dispatch.Count(e) == 0) continue;
            using var expertScope = NewDisposeScope();
            var slots = dispatch.Slots(e);
            var slotTensor = tensor(slots, ScalarType.Int64, x.device);
            var rows = tensor(slots.Select(s => s / m).ToArray(), ScalarType.Int64, x.device);
            var gates = flatWeights.index_select(0, slotTensor);
            var xin = x.index_select(0, rows);
            var (h, y) = modulated
                ? experts[e].ForwardModulated(xin, c1!.index_select(0, rows), c3!.index_select(0, rows), c2!.index_select(0, rows))
                : experts[e].ForwardWithIntermediate(xin);
            onExpert?.Invoke(e, rows, tensor(slots.Select(s => s % m).ToArray(), ScalarType.Int64, x.device), xin, h, y, gates);
            routed.IndexAdd_(0, rows, y * gates.unsqueeze(1));
        }
        return routed.MoveToOuterDisposeScope();
    }
}
