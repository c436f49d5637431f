using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using MoECompress.Compression.Calibration;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Families;
using MoECompress.Formats.Safetensors;

namespace MoECompress.Compression.Pipeline;

/// <summary>One thing the sequential pipeline holds in memory at its peak, with its size.</summary>
/// <param name="Name">What it is, e.g. "down_proj Hessian of one expert".</param>
/// <param name="Bytes">Its size.</param>
/// <param name="Count">How many of it are held together.</param>
/// <param name="Phase">Null: held throughout the stage. Otherwise the part of the stage that holds it (e.g. "forward
/// pass", "GPTQ solves"): items of different phases are never held at the same time.</param>
public sealed record MemoryItem(string Name, long Bytes, int Count = 1, string? Phase = null)
{
    /// <summary>Bytes × count.</summary>
    public long Total => Bytes * Count;
}

/// <summary>The predicted peak of one stage of the pipeline: the items it holds at once.</summary>
public sealed record MemoryStage(string Name, IReadOnlyList<MemoryItem> Items)
{
    /// <summary>The items held throughout plus those of its largest phase.</summary>
    public long Peak => Items.Where(i => i.Phase is null).Sum(i => i.Total)
                        + Items.Where(i => i.Phase is not null).GroupBy(i => i.Phase).Select(g => g.Sum(i => i.Total)).DefaultIfEmpty(0).Max();
}

/// <summary>
/// The memory plan of a sequential, layer-by-layer compression run (<c>--max-memory</c>): predicts the peak of each stage
/// from the model's shapes and the calibration size — one decoder layer's weights in float32 (or, when that leaves
/// room for fewer experts per chunk, with the routed experts held in their stored 16-bit type), the calibration hidden
/// states (in RAM, or spilled to a temporary file in float32 when they do not fit), one micro-batch's activations, and
/// the per-expert input Hessians and GPTQ working set of as many experts of one layer as fit (the chunk) — and refuses a
/// budget that cannot be met even with one expert per chunk and spilled hidden states, naming the biggest item. Nothing
/// here grows with the number of layers.
/// </summary>
/// <remarks>
/// Estimates, not measurements: the process baseline (.NET, libtorch, OR-Tools) is counted as
/// <see cref="ProcessBaselineBytes"/>; activations assume SDPA attention (no L×L score matrix per head kept) and the
/// engine's float32 compute. <c>benchmark scale</c> prints predicted against measured peaks.
/// </remarks>
public sealed class MemoryPlan
{
    /// <summary>Phase of the items held only while a layer runs forward.</summary>
    public const string ForwardPhase = "forward pass";
    /// <summary>Phase of the items held only while GPTQ solves a chunk's projections.</summary>
    public const string SolvePhase = "GPTQ solves";

    /// <summary>Resident size of the process before any model data (runtime, native libraries, solver).</summary>
    public const long ProcessBaselineBytes = 1L << 30;

    private MemoryPlan(long budget, int expertsPerChunk, bool spillHiddenStates, bool holdExpertsAt16Bit, bool releasesLayer,
        long hiddenStateBytes, IReadOnlyList<MemoryStage> stages)
    {
        ReleasesLayerForSolves = releasesLayer;
        BudgetBytes = budget;
        ExpertsPerChunk = expertsPerChunk;
        SpillHiddenStates = spillHiddenStates;
        HoldExpertsAt16Bit = holdExpertsAt16Bit;
        HiddenStateBytes = hiddenStateBytes;
        Stages = stages;
    }

    /// <summary>The budget.</summary>
    public long BudgetBytes { get; }
    /// <summary>Experts of one layer whose Hessians are collected and quantized together.</summary>
    public int ExpertsPerChunk { get; }
    /// <summary>True when the calibration hidden states go to a temporary file.</summary>
    public bool SpillHiddenStates { get; }
    /// <summary>True when the layer's routed experts are held in their stored 16-bit type (<see cref="Model.ModelEngine.HoldExpertsAt16Bit"/>).</summary>
    public bool HoldExpertsAt16Bit { get; }
    /// <summary>
    /// True when the layer's weights are not held while GPTQ solves: the layer is loaded again for each chunk's forward
    /// pass and released before the chunk's solves, and the quantized experts' weights wait in a temporary file until
    /// the layer is loaded once more to feed the next one. The output is the same; each chunk costs one more load of the
    /// layer. Chosen only when holding the layer leaves room for fewer experts per chunk (or none).
    /// </summary>
    public bool ReleasesLayerForSolves { get; }
    /// <summary>Bytes of the calibration hidden states (float32).</summary>
    public long HiddenStateBytes { get; }
    /// <summary>Predicted peak per stage.</summary>
    public IReadOnlyList<MemoryStage> Stages { get; }
    /// <summary>Largest stage peak.</summary>
    public long PeakBytes => Stages.Max(s => s.Peak);
    /// <summary>The hidden-state limit to hand to the streaming session.</summary>
    public long MaxResidentHiddenStateBytes => SpillHiddenStates ? 0 : long.MaxValue;

    /// <summary>75% of the physical memory this process may use (the default budget).</summary>
    public static long DefaultBudgetBytes()
    {
        var total = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        return total > 0 ? total / 4 * 3 : 16L << 30;
    }

    /// <summary>What the pipeline must hold, from the model's shapes.</summary>
    public sealed record Shape
    {
        /// <summary>The model.</summary>
        public required MoEConfig MoE { get; init; }
        /// <summary>Largest decoder layer's weights in float32 (all its tensors, as the engine loads them).</summary>
        public required long LayerWeightBytes { get; init; }
        /// <summary>The same with the routed experts that are stored as bfloat16/float16 held in that type (null: as <see cref="LayerWeightBytes"/>).</summary>
        public long? LayerWeightBytes16BitExperts { get; init; }
        /// <summary>Calibration tokens (sequences × length).</summary>
        public required long Tokens { get; init; }
        /// <summary>Tokens per micro-batch.</summary>
        public required int MicroBatchTokens { get; init; }
        /// <summary>Hessian kinds collected per expert (empty: no Hessians, e.g. RTN or pruning).</summary>
        public IReadOnlyList<HessianKind> HessianKinds { get; init; } = [];
        /// <summary>The stage keeps every micro-batch's MoE block input of one layer (MC-MoE sensitivity, router rows).</summary>
        public bool KeepsBlockInputs { get; init; }
        /// <summary>Bytes of a fused expert tensor rewritten whole (float32), or 0.</summary>
        public long CompositeBytes { get; init; }
        /// <summary>The stage can release the layer's weights during its solves (<see cref="ReleasesLayerForSolves"/>).</summary>
        public bool CanReleaseLayer { get; init; }
        /// <summary>With the layer released, the solves still need the chunk's experts' weights (MC-MoE sensitivity runs
        /// the original and the quantized expert on its tokens).</summary>
        public bool SolvesNeedChunkExperts { get; init; }
        /// <summary>The solves build a quantized replacement of each expert (MC-MoE sensitivity): down_proj is solved
        /// first, so when the hidden size is the wider side the last solve (up_proj, the widest) runs beside the
        /// replacement's dequantized down_proj and gate_proj (float32).</summary>
        public bool SolvesBuildReplacements { get; init; }
    }

    /// <summary>
    /// Plans <paramref name="stages"/> (name → shape) under <paramref name="budgetBytes"/>: spills the hidden states when
    /// keeping them would leave no room for one expert, and chooses the largest expert chunk that fits every stage.
    /// </summary>
    /// <exception cref="MoeCompressException">Infeasible: even one expert per chunk with spilled hidden states exceeds the
    /// budget; the message names the budget option, the predicted minimum and the biggest item.</exception>
    /// <param name="stages">Stage name → what it holds.</param>
    /// <param name="budgetBytes">The budget.</param>
    /// <param name="maxExpertsPerChunk">Never put more experts in one chunk than this (null = as many as fit).</param>
    /// <param name="option">Named in the error.</param>
    /// <param name="hold16Bit">Hold the routed experts at 16 bits (true), in float32 (false), or choose (null).</param>
    /// <param name="releaseLayer">Release the layer during the solves (true), never (false), or choose (null: only when
    /// that fits more experts per chunk; stages that cannot release it hold it regardless).</param>
    public static MemoryPlan Create(IReadOnlyList<(string Stage, Shape Shape)> stages, long budgetBytes, int? maxExpertsPerChunk = null,
        string option = "--max-memory", bool? hold16Bit = null, bool? releaseLayer = null)
    {
        if (stages.Count == 0) throw new ArgumentException("no stage to plan", nameof(stages));
        if (budgetBytes <= 0) throw new MoeCompressException(ErrorKind.Usage, $"{option} {budgetBytes}: must be a positive number of bytes");
        var experts = Math.Min(stages.Max(s => s.Shape.MoE.NumExperts), Math.Max(1, maxExpertsPerChunk ?? int.MaxValue));
        var hidden = stages[0].Shape.MoE.HiddenSize;
        var hiddenStates = stages[0].Shape.Tokens * hidden * sizeof(float);

        // Holding the experts at 16 bits is only worth it when it leaves room for more experts per chunk (fewer passes
        // over the layer); spilling the hidden states only when nothing fits in RAM.
        var holds = hold16Bit is { } forced ? new[] { forced }
            : stages.Any(s => s.Shape.LayerWeightBytes16BitExperts < s.Shape.LayerWeightBytes) ? new[] { false, true } : new[] { false };
        var releasable = stages.Any(s => s.Shape.CanReleaseLayer && s.Shape.HessianKinds.Count > 0);
        var releases = releaseLayer is { } r ? new[] { r && releasable } : releasable ? new[] { false, true } : new[] { false };
        // Tried in order of cost; a later option wins only with more experts per chunk.
        var options = releases.SelectMany(release => holds.Select(hold => (hold, release))).ToList();
        foreach (var spill in new[] { false, true })
        {
            MemoryPlan? best = null;
            foreach (var (hold, release) in options)
            {
                var chunk = experts;
                while (chunk >= 1)
                {
                    var planned = stages.Select(s => Stage(s.Stage, s.Shape, chunk, spill, hold, release)).ToList();
                    if (planned.All(p => p.Peak <= budgetBytes))
                    {
                        if (best is null || chunk > best.ExpertsPerChunk)
                            best = new MemoryPlan(budgetBytes, Math.Max(1, chunk), spill, hold, release, hiddenStates, planned);
                        break;
                    }
                    if (stages.All(s => s.Shape.HessianKinds.Count == 0)) break; // the chunk changes nothing without Hessians
                    chunk = chunk == 1 ? 0 : Math.Max(1, chunk / 2);
                }
            }
            if (best is not null) return best;
        }
        var minimal = stages.Select(s => Stage(s.Stage, s.Shape, 1, spill: true, hold16Bit: holds[^1], release: releases[^1])).MaxBy(p => p.Peak)!;
        var biggest = minimal.Items.MaxBy(i => i.Bytes)!;
        throw new MoeCompressException(ErrorKind.Infeasible,
            $"{option} {Format(budgetBytes)}: cannot be met; the '{minimal.Name}' stage needs at least {Format(minimal.Peak)} " +
            $"with one expert at a time and the hidden states spilled to disk (biggest item: {biggest.Name}: {Format(biggest.Bytes)})");
    }

    private static MemoryStage Stage(string name, Shape s, int chunk, bool spill, bool hold16Bit, bool release)
    {
        var moe = s.MoE;
        long h = moe.HiddenSize, inter = moe.ExpertIntermediateSize, k = moe.TopK, e = moe.NumExperts;
        var solves = s.HessianKinds.Count > 0;
        var released = release && solves && s.CanReleaseLayer;
        var layerPhase = released ? ForwardPhase : null;
        var items = new List<MemoryItem>
        {
            new("process baseline (runtime, libtorch, solver)", ProcessBaselineBytes),
            hold16Bit && s.LayerWeightBytes16BitExperts is { } held
                ? new("one decoder layer's weights (routed experts in their 16-bit type, the rest float32)", held, Phase: layerPhase)
                : new("one decoder layer's weights in float32", s.LayerWeightBytes, Phase: layerPhase),
        };
        if (released && s.SolvesNeedChunkExperts)
            items.Add(new MemoryItem("the chunk's experts' weights, kept while the layer is released", 3 * h * inter * (hold16Bit ? 2 : sizeof(float)), chunk,
                Phase: SolvePhase));
        var hiddenStates = s.Tokens * h * sizeof(float);
        items.Add(spill
            ? new MemoryItem("calibration hidden states: one micro-batch read from the spill file", Math.Min(hiddenStates, (long)s.MicroBatchTokens * h * sizeof(float)))
            : new MemoryItem("calibration hidden states (float32)", hiddenStates));
        // One micro-batch through the layer: input/output/residual/normed copies, attention q/k/v/out, routing, and every
        // routed expert's gate/up/intermediate rows (k per token), plus the dense MLP when wider.
        long mb = s.MicroBatchTokens;
        var activations = mb * (10 * h + 3 * k * inter + 2 * e + 3 * Math.Max(moe.DenseIntermediateSize, moe.SharedExpertIntermediateSize * Math.Max(1, moe.NumSharedExperts)))
                          * sizeof(float);
        // GPTQ solves a chunk's projections after the forward pass that collected their Hessians, never during it.
        items.Add(new MemoryItem("one micro-batch's activations", activations, Phase: solves ? ForwardPhase : null));
        if (s.KeepsBlockInputs)
            items.Add(new MemoryItem("the layer's MoE block inputs and routing (sensitivity)", s.Tokens * (h + 2 * k) * sizeof(float)));
        if (s.CompositeBytes > 0) items.Add(new MemoryItem("a fused expert tensor rewritten whole (float32)", s.CompositeBytes));
        foreach (var kind in s.HessianKinds)
        {
            var n = ExpertHessians.IsInput(kind) ? h : inter;
            var what = ExpertHessians.IsInput(kind) ? "gate/up_proj" : "down_proj";
            items.Add(new MemoryItem($"{what} Hessian of one expert ({kind}, {n}x{n} float32)", n * n * sizeof(float), chunk));
        }
        if (s.HessianKinds.Count > 0 && s.SolvesBuildReplacements && h > inter)
            items.Add(new MemoryItem("the quantized replacement's finished down/gate_proj (float32), held while up_proj is solved",
                2 * h * inter * sizeof(float), Phase: SolvePhase));
        if (s.HessianKinds.Count > 0)
        {
            items.Add(new MemoryItem($"GPTQ working set of one projection ({Math.Max(h, inter)} columns)", GptqWorkingSetBytes(h, inter),
                Phase: SolvePhase));
        }
        return new MemoryStage(name, items);
    }

    /// <summary>
    /// What quantizing the widest projection of an expert (hidden × intermediate) with GPTQ holds beside its Hessian: the
    /// scaled and dampened Hessian, a Cholesky factor and an inverse (n × n each, n the wider side; never more than three
    /// at once), plus hidden × intermediate matrices: the float32 weight and its work copy, the pending error update, the
    /// codes (bytes, then int32, then the packed layout's managed array) and the dequantized weight that feeds the
    /// next layer — five float32-sized copies. <c>moe-compress-bench quantize --gptq-memory</c> measures it.
    /// </summary>
    public static long GptqWorkingSetBytes(long hidden, long intermediate)
    {
        var n = Math.Max(hidden, intermediate);
        return (3 * n * n + 5 * hidden * intermediate) * sizeof(float);
    }

    /// <summary>"1.23 GB" (decimal units).</summary>
    public static string Format(long bytes) => bytes switch
    {
        >= 1_000_000_000 => string.Create(CultureInfo.InvariantCulture, $"{bytes / 1e9:0.##} GB"),
        >= 1_000_000 => string.Create(CultureInfo.InvariantCulture, $"{bytes / 1e6:0.#} MB"),
        _ => string.Create(CultureInfo.InvariantCulture, $"{bytes / 1e3:0.#} kB"),
    };

    /// <summary>A Markdown table of the stages and their biggest items.</summary>
    public string ToMarkdown()
    {
        var sb = new StringBuilder();
        var held = (HoldExpertsAt16Bit ? ", routed experts held in their 16-bit type" : "")
                   + (ReleasesLayerForSolves ? ", the layer released during the solves (reloaded per chunk)" : "");
        sb.AppendLine(CultureInfo.InvariantCulture, $"Memory plan: budget {Format(BudgetBytes)}, predicted peak {Format(PeakBytes)}, " +
                                                    $"{ExpertsPerChunk} expert(s) per chunk, hidden states {Format(HiddenStateBytes)} {(SpillHiddenStates ? "spilled to a temporary file" : "in RAM")}{held}");
        sb.AppendLine();
        sb.AppendLine("| stage | predicted peak | items |");
        sb.AppendLine("|---|---:|---|");
        foreach (var s in Stages)
            sb.AppendLine(CultureInfo.InvariantCulture,
                $"| {s.Name} | {Format(s.Peak)} | {string.Join("; ", s.Items.OrderByDescending(i => i.Total).Select(i => $"{i.Name}{(i.Count > 1 ? $" x {i.Count}" : "")}{(i.Phase is null ? "" : $" ({i.Phase} only)")}: {Format(i.Total)}"))} |");
        return sb.ToString();
    }

    /// <summary>JSON form (bytes).</summary>
    public JsonObject ToJsonObject() => new()
    {
        ["budget_bytes"] = BudgetBytes,
        ["peak_bytes"] = PeakBytes,
        ["experts_per_chunk"] = ExpertsPerChunk,
        ["hidden_state_bytes"] = HiddenStateBytes,
        ["spill_hidden_states"] = SpillHiddenStates,
        ["hold_experts_16bit"] = HoldExpertsAt16Bit,
        ["releases_layer_for_solves"] = ReleasesLayerForSolves,
        ["stages"] = new JsonArray(Stages.Select(s => (JsonNode?)new JsonObject
        {
            ["stage"] = s.Name,
            ["peak_bytes"] = s.Peak,
            ["items"] = new JsonArray(s.Items.Select(i => (JsonNode?)new JsonObject { ["name"] = i.Name, ["bytes"] = i.Bytes, ["count"] = i.Count, ["phase"] = i.Phase }).ToArray()),
        }).ToArray()),
    };

    /// <summary>
    /// Largest decoder layer's tensor bytes once converted to float32, from the checkpoint's headers; with
    /// <paramref name="experts16Bit"/>, routed-expert tensors stored as bfloat16/float16 count at 2 bytes per value.
    /// </summary>
    public static long LayerWeightBytes(ModelCheckpoint checkpoint, bool experts16Bit = false)
    {
        var moe = checkpoint.MoE;
        var perLayer = new Dictionary<int, long>();
        foreach (var name in checkpoint.Tensors.Names)
        {
            var role = checkpoint.Classify(name);
            if (role.Layer is not { } l || role.InMtp) continue;
            var info = checkpoint.Tensors.GetInfo(name);
            long elements = info.Shape.Aggregate(1L, (a, d) => a * d);
            if (moe.Mxfp4Experts && name.EndsWith("_blocks", StringComparison.Ordinal)) elements *= 2; // two FP4 values per byte
            var held16 = experts16Bit && role.Role == TensorRole.RoutedExpert && info.DType is SafetensorsDType.BF16 or SafetensorsDType.F16;
            perLayer[l] = perLayer.GetValueOrDefault(l) + elements * (held16 ? 2 : sizeof(float));
        }
        return perLayer.Count == 0 ? 0 : perLayer.Values.Max();
    }
}
