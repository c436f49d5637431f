using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using MoECompress.Compression.Calibration;
using MoECompress.Compression.Model;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Families;
using MoECompress.Formats.Quantized;
using MoECompress.Formats.Safetensors;
using static TorchSharp.torch;

namespace MoECompress.Compression.Quantization;

/// <summary>
/// The <c>quantize</c> command: mixed-precision quantization of a MoE checkpoint's routed experts (MC-MoE PMQ) or one
/// uniform width, written as GPTQ, compressed-tensors or dequantized weights.
/// </summary>
/// <remarks>
/// Order of work: options and the tensor plan are checked first (headers only: formats, fused layouts, budgets), then
/// the calibration profile is loaded or collected, each expert's sensitivity ε_b is measured in one streamed pass, the
/// widths are allocated (OR-Tools), and the output is written tensor by tensor in the input's order: each routed
/// expert's three projections quantized at its width (GPTQ with the profile's Hessians, or RTN; cold experts RTN),
/// attention and shared experts RTN-quantized only when their width is set, everything else copied byte for byte.
/// Routers, norms, embeddings, lm_head, biases and 1-D tensors are never quantized; MTP layers are copied. config.json
/// gets a quantization_config (packed formats). The output is written to a temporary folder and renamed into place;
/// the input is never modified.
/// </remarks>
public static class Quantizer
{
    /// <summary>moe-compress version.</summary>
    public static string ToolVersion { get; } = typeof(Quantizer).Assembly.GetName().Version?.ToString(3) ?? "0.0.0";

    /// <summary><see cref="Run"/> on a worker thread.</summary>
    public static Task<QuantizeReport> RunAsync(QuantizeOptions options, IProgress<string>? progress = null,
        CancellationToken cancellationToken = default) =>
        Task.Run(() => Run(options, progress, cancellationToken), cancellationToken);

    /// <summary>Quantizes <see cref="QuantizeOptions.Model"/> into <see cref="QuantizeOptions.Output"/> (or only plans,
    /// with <see cref="QuantizeOptions.DryRun"/>).</summary>
    /// <exception cref="MoeCompressException">Usage: bad options, formats that cannot hold the model; Infeasible: the
    /// budget is below the smallest output; Io: the output exists; data and checkpoint errors.</exception>
    public static QuantizeReport Run(QuantizeOptions options, IProgress<string>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var total = Stopwatch.StartNew();
        var seconds = new Dictionary<string, double>();
        var notes = new List<string>();
        string? output = options.DryRun ? null : Path.TrimEndingDirectorySeparator(Path.GetFullPath(options.Output!));
        if (output is not null && !options.Overwrite && (Directory.Exists(output) || File.Exists(output)))
            throw new MoeCompressException(ErrorKind.Io, $"{output}: already exists (choose another --output or allow --overwrite)");

        using var checkpoint = ModelCheckpoint.Open(options.Model, cancellationToken: cancellationToken);
        var plan = QuantizePlan.Build(checkpoint, options);
        var recipe = options.Recipe;
        var widthsAll = options.ExpertWidths;
        var expertCount = (long)plan.Layers.Count * plan.NumExperts;
        if (options.Size is { } size)
        {
            var minimum = plan.FixedBytes + expertCount * plan.ExpertBytes(widthsAll.Min());
            if (size < minimum)
                throw new MoeCompressException(ErrorKind.Infeasible,
                    $"--size {size}: below the smallest possible output, {minimum} bytes (every expert at {widthsAll.Min()} bits plus " +
                    $"{plan.FixedBytes} bytes of other tensors)");
        }
        var needsProfile = options.Allocates || options.Method == QuantizeMethod.Gptq;
        if (options.Allocates || (needsProfile && options.Profile.Profile is null))
            ModelEngine.EnsureSupported(checkpoint.Family, checkpoint.Config);
        cancellationToken.ThrowIfCancellationRequested();

        // 1. Calibration profile (router statistics, Hessians, coverage).
        CalibrationProfile? profile = null;
        if (needsProfile)
        {
            var sw = Stopwatch.StartNew();
            var request = options.Profile with { CollectHessians = options.Profile.Profile is null ? options.Method == QuantizeMethod.Gptq : options.Profile.CollectHessians };
            profile = ProfileProvider.LoadOrCollect(checkpoint, request, progress, cancellationToken);
            if (options.Method == QuantizeMethod.Gptq && !profile.HasHessians)
                throw new MoeCompressException(ErrorKind.Usage,
                    $"{options.Profile.Profile ?? "calibration profile"}: holds no expert Hessians, which --method gptq needs; " +
                    "calibrate with Hessians or use --method rtn");
            seconds["profile"] = sw.Elapsed.TotalSeconds;
        }

        // 2. Sensitivity and allocation.
        var widths = new Dictionary<int, int[]>();
        BitAllocation? allocation = null;
        ExpertSensitivityResult? sensitivity = null;
        var pinned = new List<(int Layer, int Expert)>();
        if (options.Uniform)
        {
            foreach (var l in plan.Layers) widths[l] = Enumerable.Repeat((int)options.Bits!.Value, plan.NumExperts).ToArray();
        }
        else
        {
            var sw = Stopwatch.StartNew();
            var set = CalibrationPass.LoadTokens(checkpoint, options.Profile.Data, options.Profile.DataOptions, progress, cancellationToken);
            progress?.Report($"measuring expert sensitivity on {set.Count} x {set.SeqLen} tokens at {string.Join("/", options.Candidates.Order())} bits");
            sensitivity = ExpertSensitivity.Measure(checkpoint, set, profile,
                new ExpertSensitivityOptions { Candidates = options.Candidates, Recipe = recipe, MicroBatch = options.Profile.MicroBatch },
                progress, cancellationToken);
            seconds["sensitivity"] = sw.Elapsed.TotalSeconds;

            var top = options.Candidates.Max();
            var items = new List<BitAllocationItem>();
            foreach (var l in plan.Layers)
            {
                var stats = profile!.Layer(l);
                for (var e = 0; e < plan.NumExperts; e++)
                {
                    int? pin = null;
                    if (options.ProtectSuperExperts && options.Granularity == BitAllocationGranularity.Expert && profile.SuperExperts.IsSuper(l, e))
                    {
                        pin = top;
                        pinned.Add((l, e));
                    }
                    items.Add(new BitAllocationItem(l, e, plan.ExpertParameters, stats.Frequency(e),
                        stats.Tokens > 0 ? stats.RoutingWeightMass[e] / stats.Tokens : 0, sensitivity.Errors(l, e),
                        options.Size is null ? null : options.Candidates.ToDictionary(b => b, plan.ExpertBytes), pin));
                }
            }
            allocation = BitAllocator.Allocate(items, new BitAllocatorOptions
            {
                Candidates = options.Candidates, Alpha = options.Alpha, Beta = options.Beta, Gamma = options.Gamma,
                AverageBits = options.Bits, BudgetBytes = options.Size, FixedBytes = plan.FixedBytes,
                Granularity = options.Granularity, Solver = options.Solver, BudgetOption = options.Bits is null ? "--size" : "--bits",
            }, cancellationToken);
            for (var n = 0; n < items.Count; n++)
            {
                if (!widths.TryGetValue(items[n].Layer, out var row)) widths[items[n].Layer] = row = new int[plan.NumExperts];
                row[items[n].Expert] = allocation.Widths[n];
            }
            seconds["allocation"] = allocation.Seconds;
            progress?.Report($"allocation: {allocation.Status.ToString().ToLowerInvariant()} ({allocation.Method}), average {allocation.AverageBits:0.###} bits, gap {allocation.Gap:0.###e+0}");
        }

        // 3. Cold experts and their fallback.
        var cold = new List<QuantizeFallback>();
        if (profile is not null)
            foreach (var l in plan.Layers)
                for (var e = 0; e < plan.NumExperts; e++)
                {
                    var routed = profile.Layer(l).RoutedTokens[e];
                    if (recipe.FallbackReason(profile, l, e) is { } reason) cold.Add(new QuantizeFallback(l, e, routed, reason, "rtn"));
                    else if (profile.Coverage.IsCold(l, e))
                        cold.Add(new QuantizeFallback(l, e, routed, $"cold: {routed} routed tokens, threshold {profile.Coverage.ColdThreshold:0.#}", null));
                }
        if (cold.Any(c => c.Method is not null))
            notes.Add($"{cold.Count(c => c.Method is not null)} routed experts had too few calibration tokens for GPTQ and were quantized with RTN.");
        var predicted = plan.OutputBytes(widths);
        var otherModules = plan.Entries.Count(e => e.Kind == QuantizePlan.Kind.Module);
        if (otherModules > 0) notes.Add($"{otherModules} attention / shared-expert modules quantized with RTN (their inputs have no Hessians in the profile).");
        if (options.Format != QuantizedFormat.Dequantized && options.Granularity == BitAllocationGranularity.Expert && !options.Uniform
            && widths.Values.Any(w => w.Distinct().Count() > 1))
            notes.Add("Experts of one layer have different widths: loaders that declare per-module bits (GPTQ dynamic, compressed-tensors groups) read it; " +
                      "vLLM's fused MoE kernels need one scheme per layer (--granularity layer).");
        if (checkpoint.MtpLayersPresent.Count > 0) notes.Add($"MTP layer(s) {string.Join(", ", checkpoint.MtpLayersPresent)} copied unchanged.");

        var expertBits = plan.Layers.Sum(l => widths[l].Sum(b => (double)b)) * plan.ExpertParameters;
        var expertParams = (double)expertCount * plan.ExpertParameters;
        var storedBits = plan.HasCompositeExperts ? (double?)null
            : plan.Layers.Sum(l => widths[l].Sum(b => (double)plan.ExpertBytes(b))) * 8 / expertParams;
        QuantizeReport Report(long? actual) => new()
        {
            ToolVersion = ToolVersion, Options = options, Model = checkpoint.Directory, Family = checkpoint.Family.Name, Output = actual is null ? null : output,
            Layers = plan.Layers, NumExperts = plan.NumExperts, Widths = widths, ExpertParameters = plan.ExpertParameters,
            AverageBits = expertBits / expertParams, StoredBitsPerParameter = storedBits, InputBytes = plan.InputBytes,
            PredictedBytes = predicted, ActualBytes = actual, FixedBytes = plan.FixedBytes, Allocation = allocation, Sensitivity = sensitivity,
            ColdExperts = cold, PinnedExperts = pinned, OtherQuantizedModules = otherModules, Notes = notes,
            Seconds = new Dictionary<string, double>(seconds) { ["total"] = total.Elapsed.TotalSeconds },
        };
        if (output is null) return Report(null);

        // 4. Write.
        var write = Stopwatch.StartNew();
        Write(checkpoint, plan, options, recipe, profile, widths, output, progress, cancellationToken, allocation);
        seconds["write"] = write.Elapsed.TotalSeconds;
        long actualBytes;
        using (var written = SafetensorsCheckpoint.Open(output))
            actualBytes = written.Names.Sum(n => written.GetInfo(n).ByteLength);
        return Report(actualBytes);
    }

    private static void Write(ModelCheckpoint checkpoint, QuantizePlan plan, QuantizeOptions options, QuantizeRecipe recipe,
        CalibrationProfile? profile, IReadOnlyDictionary<int, int[]> widths, string output, IProgress<string>? progress,
        CancellationToken ct, BitAllocation? allocation)
    {
        var src = checkpoint.Tensors;
        var specs = plan.Specs(widths);
        using var writer = CheckpointWriter.Create(output, specs, new CheckpointWriterOptions
        {
            Overwrite = options.Overwrite, ManifestOptions = options.ToJsonObject(),
        });
        var lastLayer = int.MinValue;
        foreach (var entry in plan.Entries)
        {
            ct.ThrowIfCancellationRequested();
            if (entry.Kind != QuantizePlan.Kind.Copy && entry.Layer != lastLayer && entry.Layer >= 0)
            {
                lastLayer = entry.Layer;
                progress?.Report($"writing layer {entry.Layer}");
            }
            switch (entry.Kind)
            {
                case QuantizePlan.Kind.Copy:
                    writer.CopyTensorFrom(entry.Name, src, cancellationToken: ct);
                    break;
                case QuantizePlan.Kind.Expert:
                {
                    using var scope = NewDisposeScope();
                    var w = src.ToTensor(entry.Name, ScalarType.Float32);
                    using var q = recipe.Quantize(w, entry.Projection, widths[entry.Layer][entry.Expert],
                        recipe.HessiansFor(profile, entry.Layer, entry.Expert));
                    QuantizedModuleWriter.Write(writer, entry.Prefix, q, options.Format, entry.Info.DType, plan.ActOrderTensors);
                    break;
                }
                case QuantizePlan.Kind.Module:
                {
                    using var scope = NewDisposeScope();
                    var w = src.ToTensor(entry.Name, ScalarType.Float32);
                    using var q = RtnQuantizer.Quantize(w, plan.Scheme(entry.Bits));
                    QuantizedModuleWriter.Write(writer, entry.Prefix, q, options.Format, entry.Info.DType, plan.ActOrderTensors);
                    break;
                }
                case QuantizePlan.Kind.Composite:
                    WriteComposite(writer, checkpoint, entry, recipe, profile, widths);
                    break;
            }
        }

        var config = (JsonObject)checkpoint.Config.DeepClone();
        var quantizationConfig = QuantizationConfigBuilder.Build(options.Format, plan.QuantizedModules(widths),
            plan.UnquantizedLinearModules(checkpoint), recipe.ActOrder);
        if (quantizationConfig is not null) config["quantization_config"] = quantizationConfig;
        writer.WriteTextFile(ModelCheckpoint.ConfigFileName, config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
        writer.CopyAuxiliaryFiles(checkpoint.Directory, [ModelCheckpoint.ConfigFileName], ct);
        writer.SetManifestProperty("quantization", new JsonObject
        {
            ["method"] = options.Method.ToString().ToLowerInvariant(),
            ["format"] = options.Format.ToName(),
            ["allocation"] = allocation?.ToJsonObject(),
            ["widths"] = new JsonObject(widths.OrderBy(kv => kv.Key).Select(kv =>
                KeyValuePair.Create(kv.Key.ToString(), (JsonNode?)new JsonArray(kv.Value.Select(b => (JsonNode?)b).ToArray())))),
        });
        progress?.Report($"committing {output}");
        writer.Commit(ct);
    }

    /// <summary>Rewrites a tensor that holds several experts or projections (fused storage) with each slice replaced by
    /// its quantized-dequantized weights, in the original dtype and shape.</summary>
    private static void WriteComposite(CheckpointWriter writer, ModelCheckpoint checkpoint, QuantizePlan.Entry entry,
        QuantizeRecipe recipe, CalibrationProfile? profile, IReadOnlyDictionary<int, int[]> widths)
    {
        using var scope = NewDisposeScope();
        var full = checkpoint.Tensors.ToTensor(entry.Name, ScalarType.Float32).contiguous();
        foreach (var (layer, expert, projection, r) in entry.Slices)
        {
            using var sliceScope = NewDisposeScope();
            var w = ExpertWeights.Load(checkpoint.Tensors, r);
            using var q = recipe.Quantize(w, projection, widths[layer][expert], recipe.HessiansFor(profile, layer, expert));
            var deq = q.Dequantize();
            var m = r.Layout switch
            {
                ExpertLayout.Fused => full[r.FusedIndex!.Value],
                ExpertLayout.FusedTransposed => full[r.FusedIndex!.Value].t(),
                _ => full,
            };
            var rows = deq.shape[0];
            var index = r.Interleaved
                ? arange(r.RowStart, r.RowStart + 2 * rows, 2, ScalarType.Int64)
                : arange(r.RowStart, r.RowStart + rows, ScalarType.Int64);
            m.index_copy_(0, index, deq);
        }
        var dtype = entry.Info.DType;
        writer.Write(entry.Name, full.to(dtype.ToScalarType()).contiguous());
    }
}
