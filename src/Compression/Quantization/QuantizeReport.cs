using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using MoECompress.Formats.Quantized;

namespace MoECompress.Compression.Quantization;

/// <summary>
/// What <see cref="Quantizer.Run"/> did: the width of every routed expert (layer × expert), how many experts got each
/// width, the average bits, the predicted and actual output size, the allocation's solver status, the experts that
/// calibration covered too thinly and their fallback, and the options. <see cref="ToJson"/> and
/// <see cref="ToMarkdown"/> render it.
/// </summary>
public sealed record QuantizeReport
{
    /// <summary>moe-compress version.</summary>
    public required string ToolVersion { get; init; }
    /// <summary>The options the run used.</summary>
    public required QuantizeOptions Options { get; init; }
    /// <summary>Input model folder (full path).</summary>
    public required string Model { get; init; }
    /// <summary>Model family ("mixtral", ...).</summary>
    public required string Family { get; init; }
    /// <summary>Output folder (full path), or null for a dry run.</summary>
    public string? Output { get; init; }
    /// <summary>True when nothing was written.</summary>
    public bool DryRun => Output is null;
    /// <summary>MoE layers whose routed experts were quantized.</summary>
    public required IReadOnlyList<int> Layers { get; init; }
    /// <summary>Routed experts per layer.</summary>
    public required int NumExperts { get; init; }
    /// <summary>Width of every routed expert: layer → width per expert.</summary>
    public required IReadOnlyDictionary<int, int[]> Widths { get; init; }
    /// <summary>Parameters of one routed expert (gate + up + down).</summary>
    public required long ExpertParameters { get; init; }
    /// <summary>Σ b·params / Σ params over the routed experts (codes only).</summary>
    public required double AverageBits { get; init; }
    /// <summary>Stored bits per routed-expert parameter including scales, zero points and group indices
    /// (null for fused storage, rewritten densely).</summary>
    public double? StoredBitsPerParameter { get; init; }
    /// <summary>Tensor bytes of the input checkpoint.</summary>
    public required long InputBytes { get; init; }
    /// <summary>Tensor bytes of the output, predicted from the plan before writing.</summary>
    public required long PredictedBytes { get; init; }
    /// <summary>Tensor bytes of the written output (read back from its headers); null for a dry run.</summary>
    public long? ActualBytes { get; init; }
    /// <summary>Bytes of everything but the routed experts (copied tensors, attention / shared-expert modules).</summary>
    public required long FixedBytes { get; init; }
    /// <summary>The allocation (null with <see cref="QuantizeOptions.Uniform"/>).</summary>
    public BitAllocation? Allocation { get; init; }
    /// <summary>The measured sensitivities (null with <see cref="QuantizeOptions.Uniform"/>).</summary>
    public ExpertSensitivityResult? Sensitivity { get; init; }
    /// <summary>Cold or thinly covered experts and what they were quantized with.</summary>
    public required IReadOnlyList<QuantizeFallback> ColdExperts { get; init; }
    /// <summary>Super experts pinned to the highest width.</summary>
    public required IReadOnlyList<(int Layer, int Expert)> PinnedExperts { get; init; }
    /// <summary>Attention / shared-expert modules quantized (RTN).</summary>
    public int OtherQuantizedModules { get; init; }
    /// <summary>Remarks (fallbacks, formats, what was left in full precision).</summary>
    public required IReadOnlyList<string> Notes { get; init; }
    /// <summary>The memory plan of the sequential passes (predicted peaks, expert chunk, spilling).</summary>
    public Pipeline.MemoryPlan? Memory { get; init; }
    /// <summary>Which activations fed each layer of the GPTQ pass.</summary>
    public Propagation Propagation { get; init; }

    /// <summary>The calibration statistics the allocation used (a saved profile, or those collected in the sensitivity
    /// pass); null when none were needed. Not part of the JSON report.</summary>
    public Calibration.CalibrationProfile? Usage { get; init; }
    /// <summary>Seconds per phase: profile, sensitivity, allocation, write, total.</summary>
    public required IReadOnlyDictionary<string, double> Seconds { get; init; }

    /// <summary>Experts at each width (ascending).</summary>
    public IReadOnlyDictionary<int, int> WidthCounts() =>
        Widths.Values.SelectMany(w => w).GroupBy(w => w).OrderBy(g => g.Key).ToDictionary(g => g.Key, g => g.Count());

    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    /// <summary>The report as indented JSON.</summary>
    public string ToJson() => ToJsonObject().ToJsonString(Indented);

    /// <summary>The report as a JSON object.</summary>
    public JsonObject ToJsonObject() => new()
    {
        ["tool"] = "moe-compress",
        ["tool_version"] = ToolVersion,
        ["command"] = "quantize",
        ["model"] = Model,
        ["family"] = Family,
        ["output"] = Output,
        ["dry_run"] = DryRun,
        ["options"] = Options.ToJsonObject(),
        ["layers"] = new JsonArray(Layers.Select(l => (JsonNode?)l).ToArray()),
        ["experts_per_layer"] = NumExperts,
        ["expert_parameters"] = ExpertParameters,
        ["average_bits"] = AverageBits,
        ["stored_bits_per_parameter"] = StoredBitsPerParameter,
        ["width_counts"] = new JsonObject(WidthCounts().Select(kv => KeyValuePair.Create(kv.Key.ToString(CultureInfo.InvariantCulture), (JsonNode?)kv.Value))),
        ["widths"] = new JsonObject(Widths.OrderBy(kv => kv.Key).Select(kv =>
            KeyValuePair.Create(kv.Key.ToString(CultureInfo.InvariantCulture), (JsonNode?)new JsonArray(kv.Value.Select(w => (JsonNode?)w).ToArray())))),
        ["size"] = new JsonObject
        {
            ["input_bytes"] = InputBytes,
            ["predicted_bytes"] = PredictedBytes,
            ["actual_bytes"] = ActualBytes,
            ["fixed_bytes"] = FixedBytes,
            ["ratio"] = InputBytes > 0 ? (double)PredictedBytes / InputBytes : null,
        },
        ["allocation"] = Allocation?.ToJsonObject(),
        ["sensitivity"] = Sensitivity?.ToJsonObject(),
        ["cold_experts"] = new JsonArray(ColdExperts.Select(c => (JsonNode?)new JsonObject
        {
            ["layer"] = c.Layer, ["expert"] = c.Expert, ["routed_tokens"] = c.RoutedTokens, ["reason"] = c.Reason, ["fallback"] = c.Method,
        }).ToArray()),
        ["pinned_super_experts"] = new JsonArray(PinnedExperts.Select(p => (JsonNode?)new JsonObject { ["layer"] = p.Layer, ["expert"] = p.Expert }).ToArray()),
        ["other_quantized_modules"] = OtherQuantizedModules,
        ["notes"] = new JsonArray(Notes.Select(n => (JsonNode?)n).ToArray()),
        ["propagation"] = Propagation.ToString().ToLowerInvariant(),
        ["memory"] = Memory?.ToJsonObject(),
        ["seconds"] = new JsonObject(Seconds.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)Math.Round(kv.Value, 3)))),
    };

    /// <summary>The report as Markdown: summary, width counts, the layer × expert table, cold experts, notes.</summary>
    public string ToMarkdown()
    {
        var inv = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.AppendLine("# moe-compress quantize").AppendLine();
        sb.AppendLine("| | |").AppendLine("|---|---|");
        sb.AppendLine($"| model | `{Model}` ({Family}) |");
        sb.AppendLine($"| output | {(Output is null ? "dry run (nothing written)" : $"`{Output}`")} |");
        var budget = Options.Bits is { } b ? $"{b.ToString("0.###", inv)} bits" : $"{Options.Size:N0} bytes";
        sb.AppendLine($"| budget | {budget}{(Options.Uniform ? " (uniform)" : $", {Options.Granularity.ToString().ToLowerInvariant()} granularity, candidates {string.Join("/", Options.Candidates)}")} |");
        sb.AppendLine($"| method / format | {Options.Method.ToString().ToLowerInvariant()} / {Options.Format.ToName()}, group {(Options.GroupSize <= 0 ? "row" : Options.GroupSize.ToString(inv))}{(Options.Symmetric ? ", symmetric" : "")}{(Options.ActOrder ? ", act-order" : "")}{(Options.GateWeighted ? ", gate-weighted Hessians" : "")} |");
        sb.AppendLine($"| average bits (routed experts) | {AverageBits.ToString("0.###", inv)}{(StoredBitsPerParameter is { } s ? $" ({s.ToString("0.###", inv)} with scales and zeros)" : "")} |");
        sb.AppendLine($"| size | input {InputBytes:N0} B → predicted {PredictedBytes:N0} B{(ActualBytes is { } a ? $", written {a:N0} B" : "")} ({(InputBytes > 0 ? (100.0 * PredictedBytes / InputBytes).ToString("0.#", inv) : "-")}%) |");
        if (Allocation is { } al)
            sb.AppendLine($"| allocation | {al.Status.ToString().ToLowerInvariant()} by {al.Method}, gap {al.Gap.ToString("0.###e+0", inv)}, {al.Seconds.ToString("0.###", inv)} s, {al.Decisions} decisions |");
        if (Options.Method == QuantizeMethod.Gptq && !DryRun)
            sb.AppendLine($"| pipeline | sequential, one layer at a time; layer l+1 fed by the {(Propagation == Propagation.Compressed ? "quantized" : "original")} layer l's outputs{(Options.Allocates ? "; sensitivity pass on original activations first, then the allocation, then the write pass" : "")} |");
        if (Memory is { } m)
            sb.AppendLine($"| memory | budget {Pipeline.MemoryPlan.Format(m.BudgetBytes)}, predicted peak {Pipeline.MemoryPlan.Format(m.PeakBytes)}, {m.ExpertsPerChunk} expert(s) per chunk, hidden states {(m.SpillHiddenStates ? "spilled to disk" : "in RAM")}{(m.HoldExpertsAt16Bit ? ", experts held in 16 bits" : "")} |");
        sb.AppendLine($"| time | {string.Join(", ", Seconds.Select(kv => $"{kv.Key} {kv.Value.ToString("0.#", inv)} s"))} |");
        sb.AppendLine();

        var counts = WidthCounts();
        var total = Math.Max(1, counts.Values.Sum());
        sb.AppendLine("## Experts per width").AppendLine();
        sb.AppendLine("| bits | experts | share |").AppendLine("|---|---|---|");
        foreach (var (w, n) in counts) sb.AppendLine($"| {w} | {n} | {(100.0 * n / total).ToString("0.#", inv)}% |");
        sb.AppendLine();

        sb.AppendLine("## Widths (layer × expert)").AppendLine();
        if (NumExperts <= 64)
        {
            sb.AppendLine("| layer | " + string.Join(" | ", Enumerable.Range(0, NumExperts)) + " |");
            sb.AppendLine("|---|" + string.Concat(Enumerable.Repeat("---|", NumExperts)));
            foreach (var (l, w) in Widths.OrderBy(kv => kv.Key)) sb.AppendLine($"| {l} | {string.Join(" | ", w)} |");
        }
        else
        {
            var widths = counts.Keys.ToList();
            sb.AppendLine("| layer | " + string.Join(" | ", widths.Select(w => $"{w}-bit")) + " |");
            sb.AppendLine("|---|" + string.Concat(Enumerable.Repeat("---|", widths.Count)));
            foreach (var (l, w) in Widths.OrderBy(kv => kv.Key))
                sb.AppendLine($"| {l} | {string.Join(" | ", widths.Select(x => w.Count(y => y == x)))} |");
        }
        sb.AppendLine();

        if (ColdExperts.Count > 0)
        {
            sb.AppendLine("## Cold experts").AppendLine();
            sb.AppendLine("| layer | expert | routed tokens | reason | quantized with |").AppendLine("|---|---|---|---|---|");
            foreach (var c in ColdExperts)
                sb.AppendLine($"| {c.Layer} | {c.Expert} | {c.RoutedTokens} | {c.Reason} | {c.Method ?? Options.Method.ToString().ToLowerInvariant()} |");
            sb.AppendLine();
        }
        if (PinnedExperts.Count > 0)
            sb.AppendLine($"Super experts pinned to {Options.Candidates.Max()} bits: {string.Join(", ", PinnedExperts.Select(p => $"{p.Layer}/{p.Expert}"))}.").AppendLine();
        if (Notes.Count > 0)
        {
            sb.AppendLine("## Notes").AppendLine();
            foreach (var n in Notes) sb.AppendLine($"- {n}");
        }
        return sb.ToString();
    }
}
