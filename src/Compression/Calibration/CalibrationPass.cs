using MoECompress.Compression.Data;
using MoECompress.Compression.Model;
using MoECompress.Compression.Reporting;
using MoECompress.Compression.Tokenization;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Families;

namespace MoECompress.Compression.Calibration;

/// <summary>
/// One pass of calibration tokens through a model, layer by layer, with an <see cref="ILayerObserver"/> attached:
/// what <see cref="Calibrator"/> uses to build a profile, and what every step that measures on real activations uses
/// (NAEE subset search, the merged router-row choice, MC-MoE's per-expert quantization error). The observer's
/// <see cref="ILayerObserver.OnMoEBlock"/> sees each MoE block's input and output and can re-run the block (or any
/// replacement of it) on that input.
/// </summary>
public static class CalibrationPass
{
    /// <summary>
    /// Tokenizes the calibration data for <paramref name="checkpoint"/> (<paramref name="data"/>: a .jsonl/.txt file or a
    /// folder; null = the bundled calibration set) with the model's own tokenizer, and checks every id against the
    /// embedding table.
    /// </summary>
    /// <exception cref="MoeCompressException">Usage: no data, data not found, ids outside the vocabulary.</exception>
    public static CalibrationSet LoadTokens(ModelCheckpoint checkpoint, string? data, CalibrationDataOptions options,
        IProgress<string>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        using var tokenizer = TokenizerLoader.Load(checkpoint.Directory);
        return LoadTokens(checkpoint, data, tokenizer, options, progress, cancellationToken);
    }

    /// <summary>As <see cref="LoadTokens(ModelCheckpoint, string?, CalibrationDataOptions, IProgress{string}?, CancellationToken)"/>
    /// with a tokenizer the caller has loaded (and disposes).</summary>
    public static CalibrationSet LoadTokens(ModelCheckpoint checkpoint, string? data, ITextTokenizer tokenizer,
        CalibrationDataOptions options, IProgress<string>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(options);
        if (data is not null && !File.Exists(data) && !Directory.Exists(data))
            throw new MoeCompressException(ErrorKind.Usage, $"{Path.GetFullPath(data)}: calibration data not found");
        var path = data ?? BundledData.LocateCalibrationSet()
            ?? throw new MoeCompressException(ErrorKind.Usage,
                $"no calibration data given (--data) and no bundled calibration set found ({BundledData.Searched(BundledData.CalibrationSet)})");
        var set = CalibrationData.Load(path, tokenizer, options, progress, cancellationToken);
        CheckTokenIds(set, checkpoint);
        return set;
    }

    /// <summary>
    /// Streams <paramref name="set"/> through the model one decoder layer at a time with <paramref name="observer"/>
    /// attached; the logits are not computed. Progress lines name each layer.
    /// </summary>
    /// <exception cref="MoeCompressException">Infeasible: the family has no forward pass here.</exception>
    public static void Run(ModelCheckpoint checkpoint, CalibrationSet set, ILayerObserver observer,
        StreamingOptions? streaming = null, IProgress<string>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        ArgumentNullException.ThrowIfNull(set);
        ArgumentNullException.ThrowIfNull(observer);
        ModelEngine.EnsureSupported(checkpoint.Family, checkpoint.Config);
        // 16-bit routed experts stay 16-bit (widened per expert as they run: exact, half the memory); see SequentialLayerPass.
        var engine = new ModelEngine(checkpoint.Tensors, checkpoint.Family, checkpoint.MoE, checkpoint.Config, checkpoint.ConfigPath) { HoldExpertsAt16Bit = true };
        var runner = engine.CreateRunner(streaming ?? new StreamingOptions());
        IProgress<StreamingProgress>? layerProgress = progress is null ? null : new ForwardingProgress(progress);
        runner.Run(set.Sequences, null, observer, layerProgress, cancellationToken);
        cancellationToken.ThrowIfCancellationRequested();
    }

    /// <summary>
    /// As <see cref="Run"/>, journaled: after each MoE layer the hidden states at the layer boundary and that layer's
    /// statistics (<paramref name="asProfile"/> wraps them in a one-layer profile) are saved to <paramref name="journal"/>;
    /// a resumed journal restores the session and skips the finished layers. Stops after the last MoE layer.
    /// </summary>
    /// <returns>The statistics of the layers an interrupted run had finished (the collector holds the others).</returns>
    internal static IReadOnlyList<MoELayerStatistics> RunJournaled(ModelCheckpoint checkpoint, CalibrationSet set, CalibrationCollector collector,
        StreamingOptions streaming, LayerPassJournal journal, Func<MoELayerStatistics, CalibrationProfile> asProfile,
        IProgress<string>? progress, CancellationToken cancellationToken)
    {
        ModelEngine.EnsureSupported(checkpoint.Family, checkpoint.Config);
        var restored = journal.RestoreStatistics();
        var engine = new ModelEngine(checkpoint) { HoldExpertsAt16Bit = true };
        IProgress<StreamingProgress>? layerProgress = progress is null ? null : new ForwardingProgress(progress);
        using var session = engine.CreateRunner(streaming).Start(set.Sequences, layerProgress, cancellationToken);
        journal.Restore(session);
        if (journal.Resumed) progress?.Report($"resuming the interrupted calibration at layer {journal.NextLayer} ({journal.Directory})");
        var cfg = checkpoint.MoE;
        var last = cfg.MoELayerIndices().Max();
        while (session.NextLayer <= last)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var layer = session.NextLayer;
            session.RunNextLayer(collector, cancellationToken);
            if (cfg.IsMoELayer[layer]) journal.Save(session, asProfile(collector.BuildLayer(layer)));
        }
        return restored;
    }

    /// <summary>Throws (Usage) when a token id does not index the model's embedding table.</summary>
    public static void CheckTokenIds(CalibrationSet set, ModelCheckpoint checkpoint)
    {
        ArgumentNullException.ThrowIfNull(set);
        ArgumentNullException.ThrowIfNull(checkpoint);
        long rows = checkpoint.MoE.VocabSize;
        var embedding = checkpoint.MoE.ModelPrefix + "embed_tokens.weight";
        if (checkpoint.Tensors.Contains(embedding) && checkpoint.Tensors.GetInfo(embedding).Shape is [var v, _])
            rows = v;
        for (var s = 0; s < set.Count; s++)
        {
            var seq = set.Sequences[s];
            for (var i = 0; i < seq.Length; i++)
                if (seq[i] < 0 || seq[i] >= rows)
                    throw new MoeCompressException(ErrorKind.Usage,
                        $"calibration sequence {s} holds token id {seq[i]} at position {i}, outside the model's {rows} embedding rows; " +
                        "the data's input_ids or the tokenizer do not belong to this model");
        }
    }

    /// <summary>Reports each streaming step as a line, synchronously on the calling thread.</summary>
    private sealed class ForwardingProgress(IProgress<string> target) : IProgress<StreamingProgress>
    {
        public void Report(StreamingProgress value) => target.ReportUpdate(value.ToUpdate("calibrate"));
    }
}
