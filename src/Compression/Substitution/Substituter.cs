using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using MoECompress.Compression.Calibration;
using MoECompress.Compression.Model;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Families;
using MoECompress.Formats.Inspection;
using MoECompress.Formats.Safetensors;
using TorchSharp;
using static TorchSharp.torch;

namespace MoECompress.Compression.Substitution;

/// <summary>
/// Compressed-expert substitution (He et al. 2025), data-light: the model's weights and routing stay as they are; per
/// MoE layer the compressed-expert vectors are trained by distillation against the original block on that layer's
/// calibration inputs, one layer at a time (<see cref="CompressedExpertTrainer"/>).
/// </summary>
/// <remarks>
/// The calibration tokens stream through the model layer by layer (<see cref="StreamingSession"/>), and the stream
/// carries the substituted model: for layer l the original layer is loaded once to capture its MoE-block inputs (from
/// the hidden states the already-substituted layers produced) and the original routed output on them; the vectors are
/// trained; then the session runs layer l with its vectors, as the engine reads them from the output, and the next
/// layer sees those hidden states. Memory: one layer's weights (twice, one after the other), the hidden states, and at
/// most <see cref="SubstituteOptions.MaxTrainTokens"/> captured inputs and targets.
/// </remarks>
public static class Substituter
{
    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    /// <summary>Trains (or, for <see cref="SubstituteExport.ReducedTopK"/>, only rewrites) and writes the output.</summary>
    /// <exception cref="MoeCompressException">Usage: bad options, missing model, output = input; Infeasible: aux out of range
    /// for the model's top-k, or a family without a forward pass; Io: the output exists.</exception>
    public static SubstituteReport Run(SubstituteOptions options, IProgress<string>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        var clock = Stopwatch.StartNew();
        var input = Path.TrimEndingDirectorySeparator(Path.GetFullPath(options.Model));
        var output = Path.TrimEndingDirectorySeparator(Path.GetFullPath(options.Output));
        CheckOptions(options, input, output);

        using var checkpoint = ModelCheckpoint.Open(input, cancellationToken: cancellationToken);
        var moe = checkpoint.MoE;
        if (checkpoint.Config.ContainsKey(CompressedExpertsConfig.Key))
            throw new MoeCompressException(ErrorKind.Usage, $"{checkpoint.ConfigPath}: the model is already substituted (key '{CompressedExpertsConfig.Key}')");
        if (options.Aux >= moe.TopK)
            throw new MoeCompressException(ErrorKind.Infeasible,
                $"--aux {options.Aux}: the model routes each token to top-{moe.TopK} experts, so at most {moe.TopK - 1} can be replaced");
        var before = CheckpointInspector.Inspect(checkpoint);
        var removed = (long)before.MoELayers * options.Aux * before.ParametersPerExpert;

        if (options.Export == SubstituteExport.ReducedTopK)
        {
            var config = (JsonObject)checkpoint.Config.DeepClone();
            foreach (var key in moe.TopKKeys) ConfigKeys.Set(config, key, moe.TopK - options.Aux);
            progress?.Report($"writing {output}: top-{moe.TopK} → top-{moe.TopK - options.Aux}, weights copied");
            Write(checkpoint, output, config, new Dictionary<string, Tensor>(), options, null, cancellationToken);
            return new SubstituteReport
            {
                Model = input, Output = output, Export = options.Export, TopK = moe.TopK, Aux = options.Aux,
                ActiveParametersBefore = before.ActiveParameters, ActiveParametersAfter = before.ActiveParameters - removed,
                TotalParametersBefore = before.TotalParameters, TotalParametersAfter = before.TotalParameters,
                ElapsedSeconds = clock.Elapsed.TotalSeconds,
            };
        }

        ModelEngine.EnsureSupported(checkpoint.Family, checkpoint.Config);
        var device = options.Training.Device;
        var set = CalibrationPass.LoadTokens(checkpoint, options.Data, options.DataOptions, progress, cancellationToken);
        progress?.Report($"calibration: {set}; training on {device.type.ToString().ToLowerInvariant()}");

        var substitutedConfig = (JsonObject)checkpoint.Config.DeepClone();
        substitutedConfig[CompressedExpertsConfig.Key] = new CompressedExpertsConfig(options.Aux).ToJson();
        using var overlay = new OverlayTensorSource(checkpoint.Tensors);
        var original = new ModelEngine(checkpoint);
        var student = new ModelEngine(overlay, checkpoint.Family, EngineConfig.FromConfig(substitutedConfig, moe, checkpoint.ConfigPath));
        var vectorTensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var results = new List<LayerTrainingResult>();
        try
        {
            var sequences = set.Sequences.Select(s => (IReadOnlyList<int>)s).ToList();
            var streaming = new StreamingOptions { MicroBatchTokens = options.MicroBatchTokens };
            using var session = student.CreateRunner(streaming).Start(sequences, null, cancellationToken);
            long tokens = sequences.Sum(s => (long)s.Count);
            var stride = Math.Max(1, (int)((tokens + options.MaxTrainTokens - 1) / options.MaxTrainTokens));
            for (var l = 0; l < moe.NumLayers; l++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                if (moe.IsMoELayer[l])
                {
                    var result = TrainLayer(original, session, l, stride, options, vectorTensors, overlay, cancellationToken);
                    results.Add(result);
                    progress?.Report($"layer {l + 1}/{moe.NumLayers}: {result.Tokens:N0} tokens, block error {result.InitialError:G4} (top-k lowered) → " +
                                     $"{result.FinalError:G4} (compressed experts) in {result.Seconds:F1} s");
                }
                session.RunNextLayer(null, cancellationToken);
            }

            var vectorParams = (long)before.MoELayers * moe.NumExperts * (2L * moe.HiddenSize + moe.ExpertIntermediateSize);
            var activeVectors = (long)before.MoELayers * options.Aux * (2L * moe.HiddenSize + moe.ExpertIntermediateSize);
            var report = new SubstituteReport
            {
                Model = input, Output = output, Export = options.Export, TopK = moe.TopK, Aux = options.Aux,
                Device = device.type.ToString().ToLowerInvariant(),
                Training = options.Training,
                CalibrationSequences = set.Count,
                CalibrationTokens = tokens,
                ActiveParametersBefore = before.ActiveParameters,
                ActiveParametersAfter = before.ActiveParameters - removed + activeVectors,
                TotalParametersBefore = before.TotalParameters,
                TotalParametersAfter = before.TotalParameters + vectorParams,
                Layers = results,
                ElapsedSeconds = clock.Elapsed.TotalSeconds,
            };
            progress?.Report($"writing {output}");
            Write(checkpoint, output, substitutedConfig, vectorTensors, options, report, cancellationToken);
            return report with { ElapsedSeconds = clock.Elapsed.TotalSeconds };
        }
        finally
        {
            foreach (var t in vectorTensors.Values) t.Dispose();
        }
    }

    private static void CheckOptions(SubstituteOptions options, string input, string output)
    {
        if (!Directory.Exists(input)) throw new MoeCompressException(ErrorKind.Usage, $"{input}: model folder not found");
        if (string.Equals(input, output, StringComparison.Ordinal) || input.StartsWith(output + Path.DirectorySeparatorChar, StringComparison.Ordinal))
            throw new MoeCompressException(ErrorKind.Usage, $"{output}: the output is (or contains) the input checkpoint");
        if (options.Aux < 1) throw new MoeCompressException(ErrorKind.Usage, $"--aux {options.Aux}: must be at least 1");
        if (options.Training.Steps < 0) throw new MoeCompressException(ErrorKind.Usage, $"--steps {options.Training.Steps}: must be 0 or more");
        if (!(options.Training.LearningRate > 0) || double.IsInfinity(options.Training.LearningRate))
            throw new MoeCompressException(ErrorKind.Usage, $"--lr {options.Training.LearningRate}: must be positive");
        if (options.Training.BatchTokens <= 0) throw new MoeCompressException(ErrorKind.Usage, $"--batch-tokens {options.Training.BatchTokens}: must be positive");
        if (options.MaxTrainTokens <= 0) throw new MoeCompressException(ErrorKind.Usage, $"--max-train-tokens {options.MaxTrainTokens}: must be positive");
        if (options.MicroBatchTokens <= 0) throw new MoeCompressException(ErrorKind.Usage, $"micro-batch {options.MicroBatchTokens}: must be positive");
        if (options.VectorDType is not (SafetensorsDType.F32 or SafetensorsDType.BF16 or SafetensorsDType.F16))
            throw new MoeCompressException(ErrorKind.Usage, $"--dtype {options.VectorDType.ToHeaderName()}: vectors are written as F32, BF16 or F16");
        if (Directory.Exists(output) && !options.Overwrite)
            throw new MoeCompressException(ErrorKind.Io, $"{output}: destination exists (use --overwrite to replace it)");
    }

    /// <summary>Captures layer l's MoE-block inputs and original routed outputs from the session's hidden states, trains, and adds the vectors to the overlay.</summary>
    private static LayerTrainingResult TrainLayer(ModelEngine original, StreamingSession session, int layer, int stride, SubstituteOptions options,
        Dictionary<string, Tensor> vectorTensors, OverlayTensorSource overlay, CancellationToken ct)
    {
        using var decoder = original.LoadLayer(layer);
        var capture = new BlockCapture(stride);
        using (no_grad())
        {
            foreach (var batch in session.MicroBatches)
            {
                ct.ThrowIfCancellationRequested();
                using var scope = NewDisposeScope();
                var x = stack(batch.SequenceIndices.Select(session.ReadHiddenStates).ToArray());
                using var rope = original.Rotary.Tables(batch.SequenceLength);
                decoder.Forward(x, rope, capture, batch);
            }
        }
        using var inputs = capture.Inputs();
        using var targets = capture.Targets();
        var (vectors, result) = CompressedExpertTrainer.Train(decoder.MoE!, inputs, targets, options.Aux, options.Training, ct);
        using (vectors)
        {
            var moe = original.MoE;
            var (n1, n2, n3) = CompressedExpertsConfig.TensorNames(original.Family, layer, moe);
            foreach (var (name, value) in new[] { (n1, vectors.GateInput), (n2, vectors.Intermediate), (n3, vectors.UpInput) })
            {
                overlay.Set(name, value);
                vectorTensors[name] = value.to(options.VectorDType.ToScalarType()).contiguous().clone().DetachFromDisposeScope();
            }
        }
        return result;
    }

    /// <summary>Copies every input tensor, adds <paramref name="added"/>, writes config.json, the report and the other files; atomic.</summary>
    private static void Write(ModelCheckpoint checkpoint, string output, JsonObject config, IReadOnlyDictionary<string, Tensor> added,
        SubstituteOptions options, SubstituteReport? report, CancellationToken ct)
    {
        var source = checkpoint.Tensors;
        var plan = source.Names.Select(n => TensorSpec.From(source.GetInfo(n))).ToList();
        plan.AddRange(added.Select(kv => new TensorSpec(kv.Key, SafetensorsDTypes.FromScalarType(kv.Value.dtype), kv.Value.shape)));
        using var writer = CheckpointWriter.Create(output, plan, new CheckpointWriterOptions
        {
            Overwrite = options.Overwrite,
            MaxShardBytes = options.MaxShardBytes,
            ManifestOptions = new JsonObject
            {
                ["command"] = "substitute",
                ["input"] = checkpoint.Directory,
                ["aux"] = options.Aux,
                ["export"] = options.Export == SubstituteExport.ReducedTopK ? "reduced-topk" : "compressed-experts",
                ["steps"] = options.Training.Steps,
                ["lr"] = options.Training.LearningRate,
                ["seed"] = options.Training.Seed,
            },
        });
        foreach (var name in source.Names)
        {
            ct.ThrowIfCancellationRequested();
            writer.CopyTensorFrom(name, source, name, ct);
        }
        foreach (var (name, value) in added) writer.Write(name, value);
        writer.WriteTextFile(ModelCheckpoint.ConfigFileName, config.ToJsonString(Indented) + "\n");
        if (report is not null)
        {
            writer.WriteTextFile(SubstituteReport.LossCsvFile, report.LossCsv());
            writer.WriteTextFile(SubstituteReport.ReportJsonFile, report.ToJsonObject().ToJsonString(Indented) + "\n");
            writer.WriteTextFile(SubstituteReport.ReportMarkdownFile, report.ToMarkdown());
        }
        if (source is SafetensorsCheckpoint files)
            writer.CopyAuxiliaryFiles(files.Directory,
                [ModelCheckpoint.ConfigFileName, SubstituteReport.LossCsvFile, SubstituteReport.ReportJsonFile, SubstituteReport.ReportMarkdownFile], ct);
        writer.Commit(ct);
    }

    /// <summary>Keeps every <c>stride</c>-th token's MoE-block input and original routed output.</summary>
    private sealed class BlockCapture(int stride) : ILayerObserver
    {
        private readonly List<Tensor> _inputs = new();
        private readonly List<Tensor> _targets = new();
        private long _seen;

        public void OnMoEBlock(MoEBlockActivation activation)
        {
            var t = activation.Input.shape[0];
            var first = (stride - _seen % stride) % stride;
            _seen += t;
            if (first >= t) return;
            var rows = ScalarOps.Range(first, t, stride);
            _inputs.Add(activation.Input.index_select(0, rows).DetachFromDisposeScope());
            _targets.Add(activation.RoutedOutput.index_select(0, rows).DetachFromDisposeScope());
        }

        public Tensor Inputs() => Join(_inputs);
        public Tensor Targets() => Join(_targets);

        private static Tensor Join(List<Tensor> parts)
        {
            var joined = cat(parts, 0).DetachFromDisposeScope();
            foreach (var p in parts) p.Dispose();
            parts.Clear();
            return joined;
        }
    }
}
