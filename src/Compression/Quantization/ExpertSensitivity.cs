using System.Diagnostics;
using MoECompress.Compression.Calibration;
using MoECompress.Compression.Data;
using MoECompress.Compression.Model;
using MoECompress.Formats.Families;

namespace MoECompress.Compression.Quantization;

/// <summary>
/// MC-MoE's per-expert quantization sensitivity: for every MoE layer, routed expert i and candidate width b,
/// ε_ib = Σ‖ΔY‖² / Σ‖Y‖² over the calibration tokens, where Y is the MoE block's output and ΔY its change when expert
/// i alone is quantized to b bits (with the user's method: RTN, or GPTQ from the layer's Hessians, collected while that
/// layer runs and freed after it; experts that calibration covered too thinly fall back to RTN and are listed). One
/// sequential pass over the calibration tokens, fed by the original model's activations (the widths are chosen only
/// after every layer is measured); each expert's projections are quantized once per width.
/// </summary>
/// <remarks>
/// ΔY is measured on the tokens routed to expert i only, weighted by their gate weights: the router is never quantized,
/// so this equals re-running the block with the expert replaced (<see cref="MoEForwardOptions.ExpertReplacements"/>),
/// at 1/E of the compute. An expert that no calibration token selects has ε = 0 at every width.
/// </remarks>
public static class ExpertSensitivity
{
    /// <summary>Streams <paramref name="set"/> through the model one decoder layer at a time and measures ε for every MoE
    /// layer (those of <paramref name="profile"/> when given), expert and candidate width; with GPTQ each layer's input
    /// Hessians are collected for that layer only, <paramref name="memory"/>'s chunk of experts at a time, and freed.</summary>
    /// <param name="checkpoint">The model.</param>
    /// <param name="set">Calibration tokens (<see cref="CalibrationPass.LoadTokens(ModelCheckpoint, string?, CalibrationDataOptions, IProgress{string}?, CancellationToken)"/>).</param>
    /// <param name="profile">Calibration profile: coverage (cold experts fall back to RTN), or null (cold: fewer routed
    /// tokens in this pass than <see cref="ColdExpertRule.FromTokens"/>'s threshold for the set).</param>
    /// <param name="options">Widths and quantization recipe.</param>
    /// <param name="memory">Memory plan (expert chunk, hidden-state spilling); null = every expert of a layer at once, in RAM.</param>
    /// <param name="progress">Receives one line per layer.</param>
    /// <param name="cancellationToken">Cancels between experts.</param>
    /// <param name="usage">Also observes every MoE layer of this pass (on the original activations) — the router statistics
    /// of the model being quantized come from the same pass, with no separate calibration pass; or null.</param>
    public static ExpertSensitivityResult Measure(ModelCheckpoint checkpoint, CalibrationSet set, CalibrationProfile? profile,
        ExpertSensitivityOptions options, Pipeline.MemoryPlan? memory = null, IProgress<string>? progress = null,
        CancellationToken cancellationToken = default, CalibrationCollector? usage = null)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        ArgumentNullException.ThrowIfNull(set);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        ModelEngine.EnsureSupported(checkpoint.Family, checkpoint.Config);
        var sw = Stopwatch.StartNew();
        var engine = new ModelEngine(checkpoint) { HoldExpertsAt16Bit = memory?.HoldExpertsAt16Bit ?? false };
        var streaming = new StreamingOptions
        {
            MicroBatchTokens = options.MicroBatch,
            MaxResidentHiddenStateBytes = memory?.MaxResidentHiddenStateBytes ?? new StreamingOptions().MaxResidentHiddenStateBytes,
        };
        using var session = engine.CreateRunner(streaming).Start(set.Sequences, null, cancellationToken);
        var cold = profile is not null ? ColdExpertRule.FromProfile(profile)
            : ColdExpertRule.FromTokens((long)set.Count * set.SeqLen, checkpoint.MoE.TopK, checkpoint.MoE.NumExperts);
        using var observer = new ExpertSensitivityObserver(cold, options, progress, cancellationToken);
        var kinds = options.Recipe.HessianKinds;
        while (!session.AllLayersDone)
        {
            var l = session.NextLayer;
            if (!checkpoint.MoE.IsMoELayer[l] || (profile is not null && !profile.HasLayer(l)))
            {
                session.RunNextLayer(null, cancellationToken);
                continue;
            }
            progress?.Report($"sensitivity: layer {l}");
            // Held: the layer stays loaded while its experts are measured. Released (memory plan): it is loaded for each
            // chunk's forward pass and only the chunk's experts are kept for the measurements.
            var held = memory?.ReleasesLayerForSolves == true && kinds.Count > 0 ? null : session.LoadNextLayer();
            try
            {
                var experts = checkpoint.MoE.NumExperts;
                var chunks = Enumerable.Range(0, experts).Chunk(kinds.Count == 0 ? experts : Math.Max(1, memory?.ExpertsPerChunk ?? experts)).ToList();
                for (var c = 0; c < chunks.Count; c++)
                {
                    using var hessians = kinds.Count == 0 ? null : new LayerHessianCollector(l, chunks[c], kinds);
                    var watch = new LayerObserverFan(c == 0 ? observer : null, c == 0 ? usage : null, hessians);
                    var kept = new Dictionary<int, GatedMlp>();
                    var layer = held ?? session.LoadNextLayer();
                    try
                    {
                        // The original layer's outputs feed the next layer (widths are not known yet): the last chunk advances.
                        if (c == chunks.Count - 1) session.Advance(layer, watch, cancellationToken);
                        else session.Observe(layer, watch, cancellationToken);
                        if (held is null)
                            foreach (var e in chunks[c]) kept[e] = layer.MoE!.Experts[e].Clone();
                    }
                    finally
                    {
                        if (held is null)
                        {
                            layer.Dispose();
                            NativeHeap.Trim();
                        }
                    }
                    var built = hessians?.Build();
                    try
                    {
                        observer.Measure(l, experts, e => held is not null ? held.MoE!.Experts[e] : kept[e], chunks[c], built);
                    }
                    finally
                    {
                        if (built is not null) foreach (var h in built.Values) h.Dispose();
                        foreach (var m in kept.Values) m.Dispose();
                    }
                    if (kinds.Count > 0)
                    {
                        NativeHeap.Trim(); // the chunk's Hessians and expert copies, freed
                        progress?.Report($"sensitivity: layer {l}: chunk {c + 1} of {chunks.Count} measured; {ResidentMemory.Describe()}");
                    }
                }
            }
            finally
            {
                held?.Dispose();
            }
            observer.Clear();
        }
        return new ExpertSensitivityResult(observer.Candidates, observer.Errors, observer.Tokens, observer.Fallbacks.ToList(), sw.Elapsed.TotalSeconds);
    }
}
