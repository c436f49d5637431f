using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Globalization;
using MoECompress.Compression.Calibration;
using MoECompress.Compression.Data;
using MoECompress.Compression.Pipeline;
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
/// a saved calibration profile is loaded when given (otherwise the router statistics are collected in the sensitivity
/// pass itself, with no separate calibration pass), each expert's sensitivity ε_b is measured in one streamed pass, the
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
        if (output is not null && !options.Resume && Directory.Exists(CheckpointWriter.PartialDirectory(output)))
            throw new MoeCompressException(ErrorKind.Io,
                $"{CheckpointWriter.PartialDirectory(output)}: partial output of an interrupted run is in the way; add --resume to continue it, or delete that folder");

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

        // Memory: plan the per-layer stages before any calibration work, so an impossible budget fails in seconds.
        var memory = PlanMemory(checkpoint, plan, options);
        if (options.DryRun) progress?.Report(memory.ToMarkdown().TrimEnd());

        // 1. Calibration statistics (router statistics, coverage): a saved profile when given; otherwise they are
        //    collected in this command's own first pass over the model (the sensitivity pass when allocating; GPTQ's
        //    uniform write pass judges coverage from the tokens its Hessians hold) — no separate calibration pass.
        CalibrationProfile? profile = null;
        if (needsProfile && (options.Profile.Profile is not null || options.Profile.Loaded is not null))
        {
            var sw = Stopwatch.StartNew();
            profile = ProfileProvider.LoadOrCollect(checkpoint, options.Profile, progress, cancellationToken);
            seconds["profile"] = sw.Elapsed.TotalSeconds;
        }

        // 2. Sensitivity and allocation.
        var widths = new Dictionary<int, int[]>();
        BitAllocation? allocation = null;
        ExpertSensitivityResult? sensitivity = null;
        var pinned = new List<(int Layer, int Expert)>();
        CalibrationSet? set = null;
        if (options.Allocates || (recipe.Method == QuantizeMethod.Gptq && !options.DryRun))
            set = options.Profile.LoadTokens(checkpoint, progress, cancellationToken);
        if (options.Uniform)
        {
            foreach (var l in plan.Layers) widths[l] = Enumerable.Repeat((int)options.Bits!.Value, plan.NumExperts).ToArray();
        }
        else
        {
            var sw = Stopwatch.StartNew();
            progress?.Report($"pass 1 of 2: measuring expert sensitivity on {set!.Count} x {set.SeqLen} tokens at {string.Join("/", options.Candidates.Order())} bits, layer by layer" +
                             (profile is null ? "; router statistics of this model collected in the same pass" : ""));
            using var usage = profile is null ? new CalibrationCollector(new CalibrationCollectorOptions()) : null;
            sensitivity = ExpertSensitivity.Measure(checkpoint, set, profile,
                new ExpertSensitivityOptions { Candidates = options.Candidates, Recipe = recipe, MicroBatch = options.Profile.MicroBatch },
                memory, progress, cancellationToken, usage);
            if (usage is not null) profile = ProfileProvider.Build(checkpoint, set, usage);
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
        // Cold experts from the profile; GPTQ adds the experts whose layer pass gave them too few tokens while writing.
        var cold = new List<QuantizeFallback>();
        if (profile is not null && recipe.Method != QuantizeMethod.Gptq)
            foreach (var c in profile.Coverage.ColdExperts.Where(c => plan.Layers.Contains(c.Layer)))
                cold.Add(new QuantizeFallback(c.Layer, c.Expert, c.RoutedTokens, $"cold: {c.RoutedTokens} routed tokens, threshold {profile.Coverage.ColdThreshold:0.#}", null));
        var predicted = plan.OutputBytes(widths);
        var otherModules = plan.Entries.Count(e => e.Kind == QuantizePlan.Kind.Module);
        if (otherModules > 0) notes.Add($"{otherModules} attention / shared-expert modules quantized with RTN (GPTQ collects Hessians for routed experts only).");
        if (options.Layers is { } range && plan.Layers.Count < checkpoint.MoE.NumMoELayers)
            notes.Add($"--layers {range}: only the routed experts of MoE layers {string.Join(", ", plan.Layers)} are quantized; the others are copied unchanged.");
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
            ColdExperts = cold, PinnedExperts = pinned, OtherQuantizedModules = otherModules, Notes = notes, Memory = memory,
            Propagation = options.Propagate, Usage = profile,
            Seconds = new Dictionary<string, double>(seconds) { ["total"] = total.Elapsed.TotalSeconds },
        };
        if (output is null) return Report(null);

        // 4. Write.
        var write = Stopwatch.StartNew();
        Write(checkpoint, plan, options, recipe, profile, widths, output, set, memory, cold, progress, cancellationToken, allocation);
        seconds["write"] = write.Elapsed.TotalSeconds;
        if (cold.Any(c => c.Method is not null))
            notes.Add($"{cold.Count(c => c.Method is not null)} routed experts had too few calibration tokens for GPTQ and were quantized with RTN.");
        long actualBytes;
        using (var written = SafetensorsCheckpoint.Open(output))
            actualBytes = written.Names.Sum(n => written.GetInfo(n).ByteLength);
        return Report(actualBytes);
    }

    private static void Write(ModelCheckpoint checkpoint, QuantizePlan plan, QuantizeOptions options, QuantizeRecipe recipe,
        CalibrationProfile? profile, IReadOnlyDictionary<int, int[]> widths, string output, CalibrationSet? set, MemoryPlan memory,
        List<QuantizeFallback> fallbacks, IProgress<string>? progress, CancellationToken ct, BitAllocation? allocation)
    {
        var src = checkpoint.Tensors;
        var specs = plan.Specs(widths);
        var coldRule = profile is not null ? ColdExpertRule.FromProfile(profile)
            : set is not null ? ColdExpertRule.FromTokens((long)set.Count * set.SeqLen, checkpoint.MoE.TopK, checkpoint.MoE.NumExperts) : null;
        using var writer = CheckpointWriter.Create(output, specs, new CheckpointWriterOptions
        {
            Overwrite = options.Overwrite, ManifestOptions = options.ToJsonObject(), Resumable = true, Resume = options.Resume,
        });
        var journal = new QuantizeJournal(writer, fallbacks);
        if (writer.Resumed) progress?.Report($"resuming {writer.TemporaryDirectory}: {journal.Describe()}");
        // Everything that needs no calibration first: copies and RTN modules; with RTN also the routed experts.
        foreach (var entry in plan.Entries)
        {
            ct.ThrowIfCancellationRequested();
            if (entry.Kind is QuantizePlan.Kind.Copy or QuantizePlan.Kind.Module && writer.IsWritten(entry.Kind == QuantizePlan.Kind.Copy ? entry.Name : plan.ModuleSpecs(entry, entry.Bits)[0].Name))
                continue;
            switch (entry.Kind)
            {
                case QuantizePlan.Kind.Copy:
                    writer.CopyTensorFrom(entry.Name, src, cancellationToken: ct);
                    break;
                case QuantizePlan.Kind.Module:
                {
                    using var scope = NewDisposeScope();
                    var w = src.ToTensor(entry.Name, ScalarType.Float32);
                    using var q = RtnQuantizer.Quantize(w, plan.Scheme(entry.Bits));
                    QuantizedModuleWriter.Write(writer, entry.Prefix, q, options.Format, entry.Info.DType, plan.ActOrderTensors);
                    break;
                }
            }
        }
        if (!writer.Resumed) journal.Save(nextLayer: 0);
        var expertEntries = plan.Entries.Where(e => e.Kind is QuantizePlan.Kind.Expert or QuantizePlan.Kind.Composite)
            .ToLookup(e => e.Kind == QuantizePlan.Kind.Expert ? e.Layer : e.Slices[0].Layer);
        if (recipe.Method == QuantizeMethod.Gptq)
            WriteSequentially(checkpoint, plan, options, recipe, coldRule, widths, set!, memory, expertEntries, writer, journal, progress, ct);
        else
            foreach (var layer in plan.Layers.Where(l => l >= journal.NextLayer))
            {
                progress?.Report($"writing layer {layer}");
                var layerWriter = new LayerQuantizationWriter(layer, checkpoint, plan, options, recipe, widths, writer, expertEntries[layer], null);
                layerWriter.WriteExperts(Enumerable.Range(0, plan.NumExperts), null, coldRule, fallbacks, ct);
                layerWriter.Finish();
                journal.Save(layer + 1);
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

    /// <summary>
    /// GPTQ, one decoder layer at a time (the sequential pipeline): the calibration hidden states stream through the model;
    /// at each layer whose experts are quantized, the experts' input Hessians are collected for one memory-sized chunk of
    /// experts at a time (<see cref="MemoryPlan.ExpertsPerChunk"/>), those experts are quantized and written, and the
    /// Hessians are freed; then the layer's outputs — computed with the quantized experts (<see cref="Propagation.Compressed"/>,
    /// the default) or with the original ones — become the next layer's inputs. Nothing of layer l is held when l+1 starts.
    /// </summary>
    private static void WriteSequentially(ModelCheckpoint checkpoint, QuantizePlan plan, QuantizeOptions options, QuantizeRecipe recipe,
        ColdExpertRule? cold, IReadOnlyDictionary<int, int[]> widths, CalibrationSet set, MemoryPlan memory,
        ILookup<int, QuantizePlan.Entry> expertEntries, CheckpointWriter writer, QuantizeJournal journal,
        IProgress<string>? progress, CancellationToken ct)
    {
        var fallbacks = journal.Fallbacks;
        var engine = new ModelEngine(checkpoint) { HoldExpertsAt16Bit = memory.HoldExpertsAt16Bit };
        var streaming = new StreamingOptions
        {
            MicroBatchTokens = options.Profile.MicroBatch, MaxResidentHiddenStateBytes = memory.MaxResidentHiddenStateBytes,
        };
        using var session = engine.CreateRunner(streaming).Start(set.Sequences, null, ct);
        journal.Restore(session);
        var last = plan.Layers.Max();
        var compressed = options.Propagate == Propagation.Compressed;
        var pass = options.Allocates ? "pass 2 of 2: " : "";
        while (session.NextLayer <= last)
        {
            var l = session.NextLayer;
            if (!plan.Layers.Contains(l))
            {
                session.RunNextLayer(null, ct);
                continue;
            }
            var clock = Stopwatch.StartNew();
            // Held: the layer stays loaded while its experts are solved, and takes their quantized weights at once.
            // Released: it is loaded for each chunk's forward pass only; the quantized weights wait in a spill file.
            var chunks = Enumerable.Range(0, plan.NumExperts).Chunk(memory.ExpertsPerChunk).ToList();
            var held = memory.ReleasesLayerForSolves ? null : session.LoadNextLayer();
            using var spill = held is null && compressed ? new ExpertWeightSpill(streaming.SpillDirectory) : null;
            try
            {
                Action<int, ExpertProjection, Tensor>? sink = !compressed ? null
                    : held is not null ? (e, p, w) => ExpertWeightSpill.Replace(held.MoE!, e, p, w)
                    : spill!.Write;
                var layerWriter = new LayerQuantizationWriter(l, checkpoint, plan, options, recipe, widths, writer, expertEntries[l], sink);
                for (var c = 0; c < chunks.Count; c++)
                {
                    ct.ThrowIfCancellationRequested();
                    using var collector = new LayerHessianCollector(l, chunks[c], recipe.HessianKinds);
                    // With original propagation the last chunk's pass also moves the (unchanged) layer's outputs on.
                    var advanced = !compressed && c == chunks.Count - 1;
                    var layer = held ?? session.LoadNextLayer();
                    try
                    {
                        if (advanced) session.Advance(layer, collector, ct);
                        else session.Observe(layer, collector, ct);
                    }
                    finally
                    {
                        if (held is null)
                        {
                            layer.Dispose();
                            NativeHeap.Trim();
                        }
                    }
                    var hessians = collector.Build();
                    try
                    {
                        layerWriter.WriteExperts(chunks[c], hessians, cold, fallbacks, ct);
                    }
                    finally
                    {
                        foreach (var h in hessians.Values) h.Dispose();
                        NativeHeap.Trim();
                    }
                    if (chunks.Count > 1)
                        progress?.Report(string.Create(CultureInfo.InvariantCulture,
                            $"{pass}layer {l}: chunk {c + 1} of {chunks.Count} ({chunks[c].Length} experts) quantized; {ResidentMemory.Describe()}"));
                }
                layerWriter.Finish();
                if (compressed && held is not null) session.Advance(held, null, ct);
                else if (compressed)
                {
                    using var layer = session.LoadNextLayer();
                    spill!.RestoreInto(layer.MoE!);
                    session.Advance(layer, null, ct);
                }
            }
            finally
            {
                held?.Dispose();
            }
            journal.Save(session);
            progress?.Report(string.Create(CultureInfo.InvariantCulture,
                $"{pass}layer {l}: {plan.NumExperts} experts quantized in {chunks.Count} chunk(s){(held is null ? " (layer reloaded per chunk)" : "")}, {clock.Elapsed.TotalSeconds:0.0} s; {ResidentMemory.Describe()}"));
        }
    }

    private static MemoryPlan PlanMemory(ModelCheckpoint checkpoint, QuantizePlan plan, QuantizeOptions options)
    {
        var recipe = options.Recipe;
        var tokens = (long)(options.Profile.Samples is > 0 ? options.Profile.Samples.Value : 1024) * options.Profile.SeqLen;
        var shape = new MemoryPlan.Shape
        {
            MoE = checkpoint.MoE,
            LayerWeightBytes = MemoryPlan.LayerWeightBytes(checkpoint),
            LayerWeightBytes16BitExperts = MemoryPlan.LayerWeightBytes(checkpoint, experts16Bit: true),
            Tokens = tokens,
            MicroBatchTokens = options.Profile.MicroBatch,
            HessianKinds = recipe.HessianKinds,
            CompositeBytes = plan.Entries.Where(e => e.Kind == QuantizePlan.Kind.Composite)
                .Select(e => e.Info.Shape.Aggregate(1L, (a, d) => a * d) * sizeof(float)).DefaultIfEmpty(0).Max(),
        };
        var stages = new List<(string, MemoryPlan.Shape)>();
        if (options.Allocates) stages.Add(("sensitivity (pass 1)", shape with { KeepsBlockInputs = true, CanReleaseLayer = true, SolvesNeedChunkExperts = true, SolvesBuildReplacements = true }));
        stages.Add((recipe.Method == QuantizeMethod.Gptq ? "GPTQ write (sequential)" : "RTN write", recipe.Method == QuantizeMethod.Gptq ? shape with { CanReleaseLayer = true }
            : shape with { Tokens = 0, HessianKinds = [], LayerWeightBytes = 0 }));
        return MemoryPlan.Create(stages, options.MaxMemoryBytes ?? MemoryPlan.DefaultBudgetBytes(), options.MaxExpertsPerChunk,
            hold16Bit: options.HoldExpertsAt16Bit, releaseLayer: options.ReleaseLayerForSolves);
    }
}
