using MoECompress.Compression.Data;
using MoECompress.Compression.Model;
using MoECompress.Formats.Families;

namespace MoECompress.Compression.Calibration;

/// <summary>
/// The loop of a sequential pass that decides per MoE layer (prune and merge with compressed propagation): the calibration
/// sequences stream through the model from the journal's layer boundary (or the embeddings), dense layers simply run, and
/// each MoE layer is handed, loaded, to the caller, which observes it as often as it needs, changes it and moves the
/// hidden states on with <see cref="StreamingSession.Advance"/>.
/// </summary>
internal static class SequentialLayerPass
{
    /// <summary>Runs the pass; <c>onMoELayer</c> gets the session and the loaded MoE layer (disposed afterwards) and must
    /// advance the session past it.</summary>
    public static void Run(ModelCheckpoint checkpoint, CalibrationSet set, StreamingOptions streaming, LayerPassJournal? journal, string operation,
        Action<StreamingSession, DecoderLayer> onMoELayer, IProgress<string>? progress, CancellationToken ct)
    {
        var cfg = checkpoint.MoE;
        // Routed experts stored in 16 bits stay so and are widened per expert as they run: the same results (widening is
        // exact) at half the memory of a layer's experts, which leaves room for what the caller adds (e.g. merged experts).
        var engine = new ModelEngine(checkpoint) { HoldExpertsAt16Bit = true };
        using var session = engine.CreateRunner(streaming).Start(set.Sequences, null, ct);
        journal?.Restore(session);
        if (journal is { Resumed: true }) progress?.Report($"resuming the interrupted {operation} at layer {journal.NextLayer} ({journal.Directory})");
        var last = cfg.MoELayerIndices().Max();
        while (session.NextLayer <= last)
        {
            ct.ThrowIfCancellationRequested();
            var l = session.NextLayer;
            if (!cfg.IsMoELayer[l])
            {
                session.RunNextLayer(null, ct);
                continue;
            }
            using var layer = session.LoadNextLayer();
            onMoELayer(session, layer);
            if (session.NextLayer != l + 1) throw new InvalidOperationException($"the {operation} pass did not advance past layer {l}");
        }
    }
}
