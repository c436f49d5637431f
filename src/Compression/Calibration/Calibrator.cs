using System.Globalization;
using System.Security.Cryptography;
using MoECompress.Compression.Data;
using MoECompress.Compression.Model;
using MoECompress.Compression.Tokenization;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Families;

namespace MoECompress.Compression.Calibration;

/// <summary>
/// The <c>calibrate</c> command as a library call: runs a model once over calibration text, one decoder layer at a
/// time (<see cref="StreamingRunner"/>), with a <see cref="CalibrationCollector"/> attached, and saves the resulting
/// <see cref="CalibrationProfile"/> atomically.
/// </summary>
public static class Calibrator
{
    /// <summary>Runs calibration on a worker thread (see <see cref="Run"/>).</summary>
    public static Task<CalibrationResult> RunAsync(CalibrateOptions options, IProgress<string>? progress = null,
        CancellationToken cancellationToken = default) =>
        Task.Run(() => Run(options, progress, cancellationToken), cancellationToken);

    /// <summary>
    /// Checks the options and the model (a family without a forward pass fails here, before anything is read), loads the
    /// tokenizer and the calibration sequences, streams them through the model collecting statistics, and writes the
    /// profile folder (temporary folder + rename: nothing is left behind on failure or cancellation).
    /// </summary>
    /// <exception cref="MoeCompressException">Usage (bad options, no data), InvalidConfig / InvalidCheckpoint (model),
    /// Infeasible (family without a forward pass), Io (output exists, write failed).</exception>
    /// <exception cref="OperationCanceledException">Cancelled.</exception>
    public static CalibrationResult Run(CalibrateOptions options, IProgress<string>? progress = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        var started = System.Diagnostics.Stopwatch.StartNew();
        var collectorOptions = Validate(options);
        var modelDir = Path.GetFullPath(options.Model);
        if (!Directory.Exists(modelDir))
            throw new MoeCompressException(ErrorKind.Usage, $"{modelDir}: model folder not found");

        // Cheap checks first: family and forward support from config.json alone, then the output folder.
        var configPath = Path.Combine(modelDir, ModelCheckpoint.ConfigFileName);
        var config = Formats.Families.ConfigReader.LoadFile(configPath);
        var family = FamilyRegistry.Detect(config, configPath);
        ModelEngine.EnsureSupported(family, config);
        var outDir = ResolveOutput(options, modelDir);
        cancellationToken.ThrowIfCancellationRequested();

        progress?.Report($"opening {modelDir}");
        using var checkpoint = ModelCheckpoint.Open(modelDir);
        if (checkpoint.MoE.NumMoELayers == 0)
            throw new MoeCompressException(ErrorKind.Infeasible, $"{configPath}: the model has no MoE layer to calibrate");

        using var tokenizer = TokenizerLoader.Load(modelDir);
        var set = CalibrationPass.LoadTokens(checkpoint, options.Data, tokenizer,
            new CalibrationDataOptions { Samples = options.Samples, SeqLen = options.SeqLen, Seed = options.Seed },
            progress, cancellationToken);
        progress?.Report($"calibrating on {set.Count} x {set.SeqLen} = {(long)set.Count * set.SeqLen:N0} tokens");

        using var collector = new CalibrationCollector(collectorOptions);
        var streaming = new StreamingOptions
        {
            MicroBatchTokens = options.MicroBatch,
            SpillDirectory = options.SpillDirectory,
            MaxResidentHiddenStateBytes = options.MaxResidentHiddenStateBytes,
        };
        var model = CalibrationModelInfo.From(checkpoint.MoE, modelDir, Sha256Hex(configPath), tokenizer.Name);
        var data = CalibrationDataInfo.From(set);
        CalibrationProfile profile;
        LayerPassJournal? journal = null;
        if (options.DumpRouterLogits)
        {
            // Router logits are kept per token, not journaled: this pass is not resumable.
            if (options.Resume) throw new MoeCompressException(ErrorKind.Usage, "--resume: a calibration with --dump-router-logits is not journaled; rerun it without --resume");
            CalibrationPass.Run(checkpoint, set, collector, streaming, progress, cancellationToken);
            profile = collector.Build(model, data);
            profile.RouterLogits = collector.BuildRouterLogits(set.Sequences);
        }
        else
        {
            journal = LayerPassJournal.Open(outDir, "calibrate", LayerPassJournal.Fingerprint(set, CalibrationProfile.CurrentToolVersion,
                Sha256Hex(configPath), collectorOptions.MeanOutputOverAllTokens.ToString(), collectorOptions.ColdThreshold?.ToString("R", CultureInfo.InvariantCulture) ?? "-",
                options.MicroBatch.ToString(CultureInfo.InvariantCulture)), options.Resume, "--resume");
            var restored = CalibrationPass.RunJournaled(checkpoint, set, collector, streaming, journal,
                layer => CalibrationProfile.Create(model, data, collectorOptions, [layer]), progress, cancellationToken);
            profile = CalibrationProfile.Create(model, data, collectorOptions, [.. restored, .. collector.BuildLayers()]);
        }

        progress?.Report($"writing {outDir}");
        var saved = profile.Save(outDir, options.Overwrite, cancellationToken);
        journal?.Delete();
        started.Stop();
        var result = new CalibrationResult(profile, saved, started.Elapsed);
        progress?.Report($"{profile} -> {saved} ({result.TokensPerSecond:N0} tokens/s)");
        return result;
    }

    private static CalibrationCollectorOptions Validate(CalibrateOptions o)
    {
        if (string.IsNullOrWhiteSpace(o.Model)) throw new MoeCompressException(ErrorKind.Usage, "no model folder given");
        if (o.SeqLen < 1) throw new MoeCompressException(ErrorKind.Usage, $"--seq-len {o.SeqLen} must be at least 1");
        if (o.Samples is < 0) throw new MoeCompressException(ErrorKind.Usage, $"--samples {o.Samples} must not be negative (0 = every window)");
        if (o.MicroBatch < 1) throw new MoeCompressException(ErrorKind.Usage, $"micro-batch size {o.MicroBatch} must be at least 1 token");
        if (o.MaxResidentHiddenStateBytes < 0)
            throw new MoeCompressException(ErrorKind.Usage, $"resident hidden-state limit {o.MaxResidentHiddenStateBytes} must not be negative");
        if (o.Data is not null && !File.Exists(o.Data) && !Directory.Exists(o.Data))
            throw new MoeCompressException(ErrorKind.Usage, $"{Path.GetFullPath(o.Data)}: calibration data not found");
        var collector = new CalibrationCollectorOptions
        {
            MeanOutputOverAllTokens = o.MeanOutputOverAllTokens,
            KeepRouterLogits = o.DumpRouterLogits,
            ColdThreshold = o.ColdThreshold,
        };
        collector.Validate();
        return collector;
    }

    private static string ResolveOutput(CalibrateOptions o, string modelDir)
    {
        var outDir = Path.TrimEndingDirectorySeparator(Path.GetFullPath(o.Out ?? $"{Path.GetFileName(modelDir)}-calibration"));
        var model = Path.TrimEndingDirectorySeparator(modelDir);
        if (string.Equals(outDir, model, StringComparison.Ordinal) || model.StartsWith(outDir + Path.DirectorySeparatorChar, StringComparison.Ordinal))
            throw new MoeCompressException(ErrorKind.Usage, $"{outDir}: the profile folder would replace the model folder; choose another --out");
        if (!o.Overwrite && (Directory.Exists(outDir) || File.Exists(outDir)))
            throw new MoeCompressException(ErrorKind.Io, $"{outDir}: output already exists (choose another --out or allow overwriting)");
        return outDir;
    }

    /// <summary>Lower-case hex SHA-256 of a file (the config hash a profile records).</summary>
    internal static string Sha256Hex(string path)
    {
        using var stream = File.OpenRead(path);
        return Convert.ToHexStringLower(SHA256.HashData(stream));
    }
}
