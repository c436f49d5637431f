using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using MoECompress.Compression.Surgery;

namespace MoECompress.Compression.Pruning;

/// <summary>
/// The result of <see cref="Pruner.Run"/>: the request, the method and profile used, every routed layer's decision
/// (kept experts old → new with their scores, removed experts with theirs, protected experts), the global-pruning
/// summary, notes, and the sizes written. <see cref="ToJson"/> and <see cref="ToMarkdown"/> render it; the JSON is also
/// recorded in the output's <c>moe-compress-manifest.json</c> under "prune" (the caller writes report files).
/// </summary>
public sealed record PruneReport
{
    /// <summary>moe-compress version.</summary>
    public required string ToolVersion { get; init; }
    /// <summary>Full path of the input model.</summary>
    public required string Model { get; init; }
    /// <summary>Family adapter name.</summary>
    public required string Family { get; init; }
    /// <summary>Full path of the output checkpoint; null for a dry run.</summary>
    public string? Output { get; init; }
    /// <summary>True when nothing was written.</summary>
    public bool DryRun { get; init; }
    /// <summary>The importance method's name.</summary>
    public required string Method { get; init; }
    /// <summary>What the method's score is.</summary>
    public required string MethodDescription { get; init; }
    /// <summary>True when the method was not given and <see cref="Pruner.DefaultMethod"/> was used.</summary>
    public bool MethodIsDefault { get; init; }
    /// <summary>Global ranking with equalised counts (else uniform).</summary>
    public bool Global { get; init; }
    /// <summary>The requested ratio, if given.</summary>
    public double? RequestedRatio { get; init; }
    /// <summary>The requested E', if given.</summary>
    public int? RequestedKeep { get; init; }
    /// <summary>E.</summary>
    public required int InputExperts { get; init; }
    /// <summary>E'.</summary>
    public required int OutputExperts { get; init; }
    /// <summary>top-k of the model.</summary>
    public required int TopK { get; init; }
    /// <summary>Expert groups (n_group of group-limited routing; 1 = none).</summary>
    public int Groups { get; init; } = 1;
    /// <summary>Where the calibration statistics came from.</summary>
    public required ProfileSource Profile { get; init; }
    /// <summary>True when super experts were protected (not <see cref="PruneOptions.AllowSuperExperts"/>).</summary>
    public bool SuperExpertsProtected { get; init; }
    /// <summary>Every routed layer's decision (decoder layers, then MTP layers).</summary>
    public required IReadOnlyList<PrunedLayer> Layers { get; init; }
    /// <summary>Global pruning's choice and cost; null for uniform pruning.</summary>
    public GlobalPruningSummary? GlobalSummary { get; init; }
    /// <summary>What fed each layer while its statistics were measured (see <see cref="PruneOptions.Propagate"/>).</summary>
    public Quantization.Propagation Propagation { get; init; } = Quantization.Propagation.Original;
    /// <summary>The statistics the decisions were made from (with compressed propagation: each layer measured after the
    /// layers before it were pruned). Not part of the JSON report.</summary>
    public Calibration.CalibrationProfile? Statistics { get; init; }
    /// <summary>Remarks (MTP proxy, NAEE data, ...).</summary>
    public IReadOnlyList<string> Notes { get; init; } = [];
    /// <summary>What the surgery wrote (sizes); null for a dry run.</summary>
    public ExpertSurgeryResult? Surgery { get; init; }
    /// <summary>Wall-clock seconds of the whole run.</summary>
    public double ElapsedSeconds { get; init; }

    /// <summary>Fraction of routed experts removed per layer: 1 − E'/E.</summary>
    public double Reduction => InputExperts == 0 ? 0 : 1.0 - (double)OutputExperts / InputExperts;

    private static readonly JsonSerializerOptions Indented = new()
    {
        WriteIndented = true,
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    /// <summary>The report as indented JSON (snake_case keys).</summary>
    public string ToJson() => ToJsonObject().ToJsonString(Indented);

    /// <summary>The report as a JSON object.</summary>
    public JsonObject ToJsonObject()
    {
        var layers = new JsonArray();
        foreach (var l in Layers)
        {
            var o = new JsonObject
            {
                ["layer"] = l.Layer,
                ["mtp"] = l.IsMtp,
                ["score"] = l.ScoreName,
                ["rule"] = l.Rule,
                ["kept"] = new JsonArray(l.Kept.Select(k => (JsonNode)ExpertJson(k)).ToArray()),
                ["removed"] = new JsonArray(l.Removed.Select(k => (JsonNode)ExpertJson(k)).ToArray()),
                ["protected"] = new JsonArray(l.Protected.Select(p => (JsonNode)p).ToArray()),
            };
            if (l.OutputError is { } err) o["output_error"] = Num(err);
            if (l.GlobalKeep is { } g)
            {
                o["global_keep"] = g;
                o["extra_kept"] = l.ExtraKept;
            }
            layers.Add(o);
        }
        var root = new JsonObject
        {
            ["tool"] = "moe-compress",
            ["tool_version"] = ToolVersion,
            ["operation"] = "prune",
            ["model"] = Model,
            ["family"] = Family,
            ["output"] = Output,
            ["dry_run"] = DryRun,
            ["method"] = Method,
            ["method_description"] = MethodDescription,
            ["method_is_default"] = MethodIsDefault,
            ["mode"] = Global ? "global" : "uniform",
            ["requested_ratio"] = RequestedRatio,
            ["requested_keep"] = RequestedKeep,
            ["input_experts"] = InputExperts,
            ["output_experts"] = OutputExperts,
            ["top_k"] = TopK,
            ["groups"] = Groups,
            ["reduction"] = Math.Round(Reduction, 6),
            ["super_experts_protected"] = SuperExpertsProtected,
            ["propagation"] = Propagation == Quantization.Propagation.Compressed ? "compressed" : "original",
            ["profile"] = ProfileJson(),
            ["layers"] = layers,
        };
        if (GlobalSummary is { } s)
            root["global"] = new JsonObject
            {
                ["normalization"] = s.Normalization,
                ["total_experts"] = s.TotalExperts,
                ["requested_removed"] = s.RequestedRemoved,
                ["global_removed"] = s.GlobalRemoved,
                ["requested_reduction"] = Math.Round(s.RequestedReduction, 6),
                ["global_reduction"] = Math.Round(s.GlobalReduction, 6),
                ["achieved_reduction"] = Math.Round(s.AchievedReduction, 6),
                ["output_experts"] = s.OutputExperts,
                ["extra_kept"] = s.ExtraKept,
                ["layer_keep"] = new JsonObject(s.LayerKeep.OrderBy(kv => kv.Key)
                    .Select(kv => KeyValuePair.Create(kv.Key.ToString(CultureInfo.InvariantCulture), (JsonNode?)kv.Value))),
            };
        root["notes"] = new JsonArray(Notes.Select(n => (JsonNode)n).ToArray());
        root["sizes"] = Surgery?.ToJson();
        root["elapsed_seconds"] = Math.Round(ElapsedSeconds, 3);
        return root;
    }

    private JsonObject ProfileJson()
    {
        var p = new JsonObject
        {
            ["source"] = Profile.Kind,
            ["path"] = Profile.Path,
            ["tokens"] = Profile.Tokens,
            ["created_utc"] = Profile.CreatedUtc.ToString("O", CultureInfo.InvariantCulture),
            ["description"] = Profile.Describe(),
        };
        if (Profile.Data is { } d)
            p["data"] = new JsonObject
            {
                ["files"] = new JsonArray(d.Files.Select(f => (JsonNode)f).ToArray()),
                ["documents"] = d.Documents,
                ["sequences"] = d.Sequences,
                ["seq_len"] = d.SeqLen,
                ["seed"] = d.Seed,
                ["sampling"] = d.Sampling,
                ["description"] = d.Description,
            };
        return p;
    }

    private static JsonObject ExpertJson(PrunedExpert e)
    {
        var o = new JsonObject { ["original"] = e.Original };
        if (e.New is { } n) o["new"] = n;
        o["score"] = Num(e.Score);
        if (e.Protected) o["protected"] = true;
        if (e.EqualisationExtra) o["equalisation_extra"] = true;
        return o;
    }

    private static JsonNode? Num(double v) => double.IsFinite(v) ? JsonValue.Create(v) : null;

    /// <summary>The report as Markdown: summary, global cost, one table row per layer, notes.</summary>
    public string ToMarkdown()
    {
        var c = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.AppendLine(DryRun ? "# Pruning plan (dry run)" : "# Pruning report");
        sb.AppendLine();
        sb.AppendLine(c, $"- Model: `{Model}` ({Family})");
        if (Output is not null) sb.AppendLine(c, $"- Output: `{Output}`");
        sb.AppendLine(c, $"- Method: **{Method}**{(MethodIsDefault ? " (default)" : "")}: {MethodDescription}");
        sb.AppendLine(c, $"- Mode: {(Global ? "global ranking, equalised for loadability" : "uniform (same count in every layer)")}");
        var asked = RequestedKeep is { } k ? $"keep {k}" : RequestedRatio is { } r ? string.Create(c, $"ratio {r:0.###}") : "?";
        var groups = Groups > 1 ? $", {Groups} expert groups" : "";
        sb.AppendLine(c, $"- Routed experts per MoE layer: {InputExperts} → {OutputExperts} ({Reduction:P1} removed; asked: {asked}); top-k {TopK}{groups}");
        sb.AppendLine(c, $"- Calibration: {Profile.Describe()}");
        sb.AppendLine(c, $"- Propagation: {(Propagation == Quantization.Propagation.Compressed ? "compressed (one layer at a time: each layer measured on the outputs of the pruned layers before it)" : "original (every layer measured on the original model)")}");
        sb.AppendLine(c, $"- Super experts: {(SuperExpertsProtected ? "protected" : "not protected (--allow-super-experts)")}");
        if (Surgery is { } s)
            sb.AppendLine(c, $"- Size: {s.OutputTensorBytes:N0} of {s.InputTensorBytes:N0} tensor bytes ({s.SizeRatio:P1}), {s.TensorsWritten} tensors, written in {s.Elapsed.TotalSeconds:F1} s");
        sb.AppendLine(c, $"- Elapsed: {ElapsedSeconds:F1} s");

        if (GlobalSummary is { } g)
        {
            sb.AppendLine();
            sb.AppendLine("## Global ranking and equalisation");
            sb.AppendLine();
            sb.AppendLine(c, $"Scores normalised per layer ({g.Normalization}) and ranked across layers. The global threshold removes " +
                             $"{g.GlobalRemoved} of {g.TotalExperts} experts ({g.GlobalReduction:P1}; requested {g.RequestedRemoved}, {g.RequestedReduction:P1}). " +
                             $"Stock runtimes need one expert count, so every layer keeps E' = {g.OutputExperts}: " +
                             $"{g.ExtraKept} extra experts kept, {g.AchievedReduction:P1} achieved.");
            sb.AppendLine();
            sb.AppendLine("| layer | global choice k_l | equalised E' | extra kept |");
            sb.AppendLine("|---:|---:|---:|---:|");
            foreach (var (layer, keep) in g.LayerKeep.OrderBy(kv => kv.Key))
                sb.AppendLine(c, $"| {layer} | {keep} | {g.OutputExperts} | {g.OutputExperts - keep} |");
        }

        sb.AppendLine();
        sb.AppendLine("## Layers");
        sb.AppendLine();
        sb.AppendLine("| layer | kept (original→new: score) | removed (original: score) | protected | rule |");
        sb.AppendLine("|---:|---|---|---|---|");
        foreach (var l in Layers)
        {
            var kept = string.Join(", ", l.Kept.Select(e => $"{e.Original}→{e.New}: {e.Score.ToString("G4", c)}{(e.EqualisationExtra ? "⁺" : "")}"));
            var removed = string.Join(", ", l.Removed.Select(e => $"{e.Original}: {e.Score.ToString("G4", c)}"));
            var prot = l.Protected.Count == 0 ? "" : string.Join(", ", l.Protected);
            var rule = l.Rule + (l.OutputError is { } err ? $"; output error {err.ToString("G4", c)}" : "");
            sb.AppendLine(c, $"| {l.Layer}{(l.IsMtp ? " (MTP)" : "")} | {kept} | {removed} | {prot} | {l.ScoreName}: {rule} |");
        }
        if (Layers.Any(l => l.Kept.Any(e => e.EqualisationExtra)))
        {
            sb.AppendLine();
            sb.AppendLine("⁺ kept only to equalise the expert count across layers.");
        }
        if (Notes.Count > 0)
        {
            sb.AppendLine();
            sb.AppendLine("## Notes");
            sb.AppendLine();
            foreach (var n in Notes) sb.AppendLine(c, $"- {n}");
        }
        return sb.ToString();
    }
}
