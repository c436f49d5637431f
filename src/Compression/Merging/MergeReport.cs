using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using MoECompress.Compression.Calibration;
using MoECompress.Compression.Surgery;
using MoECompress.Formats.Families;

namespace MoECompress.Compression.Merging;

/// <summary>
/// The result of <see cref="Merger.Run"/>: per routed layer the clusters (members and merge weights), what the subspace
/// merge kept (rank and energy per projection), the router-row rule with both measured errors, the super experts kept
/// alone, and the sizes written. <see cref="ToJson"/> and <see cref="ToMarkdown"/> render it; the caller writes the files.
/// </summary>
public sealed record MergeReport
{
    /// <summary>moe-compress version.</summary>
    public required string ToolVersion { get; init; }
    /// <summary>Input model folder (full path).</summary>
    public required string Model { get; init; }
    /// <summary>Output folder (full path), or null for a dry run.</summary>
    public string? Output { get; init; }
    /// <summary>True when nothing was computed or written beyond the clusters.</summary>
    public required bool DryRun { get; init; }
    /// <summary>Model family.</summary>
    public required string Family { get; init; }
    /// <summary>E: routed experts per layer before.</summary>
    public required int InputExperts { get; init; }
    /// <summary>E': routed experts per layer after.</summary>
    public required int OutputExperts { get; init; }
    /// <summary>Merge method.</summary>
    public required MergeMethod Method { get; init; }
    /// <summary>Clustering method.</summary>
    public required ClusteringMethod Clustering { get; init; }
    /// <summary>Hierarchical clustering's cluster-size limit as handed to the clustering (raised there to ⌈E/E'⌉ per group), null for none.</summary>
    public int? MaxClusterSize { get; init; }
    /// <summary>Subspace rank, when given.</summary>
    public int? Rank { get; init; }
    /// <summary>Subspace energy fraction in effect (null for average or a rank).</summary>
    public double? Energy { get; init; }
    /// <summary>Whitening on.</summary>
    public bool Whiten { get; init; }
    /// <summary>Members' neurons aligned to the representative before merging.</summary>
    public bool Align { get; init; }
    /// <summary>The router-row option.</summary>
    public required RouterRowChoice RouterRows { get; init; }
    /// <summary>What fed each layer while it was measured: the original model's outputs, or (compressed) those of the
    /// already-merged layers before it.</summary>
    public Quantization.Propagation Propagation { get; init; } = Quantization.Propagation.Original;
    /// <summary>The statistics the clusters were made from (with compressed propagation: each layer measured after the
    /// layers before it were merged). Not part of the JSON report.</summary>
    public CalibrationProfile? Statistics { get; init; }
    /// <summary>Where the statistics came from (profile path, or "calibrated in memory").</summary>
    public required string ProfileSource { get; init; }
    /// <summary>Calibration tokens behind the statistics.</summary>
    public required long CalibrationTokens { get; init; }
    /// <summary>Super experts that were kept alone (empty with --allow-super-experts).</summary>
    public required IReadOnlyList<SuperExpert> SuperExpertsKeptAlone { get; init; }
    /// <summary>Per routed layer.</summary>
    public required IReadOnlyList<MergeLayerReport> Layers { get; init; }
    /// <summary>What the surgery wrote, or null for a dry run.</summary>
    public ExpertSurgeryResult? Surgery { get; init; }
    /// <summary>Remarks (fallbacks, unmeasured layers, …).</summary>
    public IReadOnlyList<string> Notes { get; init; } = [];
    /// <summary>Wall-clock seconds.</summary>
    public double ElapsedSeconds { get; init; }

    private static readonly JsonSerializerOptions Indented = new()
    {
        WriteIndented = true,
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    /// <summary>Definition of the router-row errors.</summary>
    public const string ErrorDefinition =
        "Σ_t ‖merged_block(x_t) − block(x_t)‖² / Σ_t ‖block(x_t)‖² over calibration tokens t, x_t the block input (the original model's; with compressed propagation, after the merged layers before it)";

    /// <summary>The report as indented JSON (snake_case keys).</summary>
    public string ToJson() => ToJsonObject().ToJsonString(Indented);

    /// <summary>The report as a JSON object.</summary>
    public JsonObject ToJsonObject()
    {
        var root = new JsonObject
        {
            ["tool"] = "moe-compress",
            ["tool_version"] = ToolVersion,
            ["operation"] = "merge",
            ["model"] = Model,
            ["output"] = Output,
            ["dry_run"] = DryRun,
            ["family"] = Family,
            ["input_experts"] = InputExperts,
            ["output_experts"] = OutputExperts,
            ["method"] = Name(Method),
            ["clustering"] = Name(Clustering),
            ["max_cluster_size"] = Clustering != ClusteringMethod.Hierarchical ? null
                : MaxClusterSize is not { } cap ? "none" : cap <= 1 ? "balanced" : JsonValue.Create(cap),
            ["rank"] = Rank,
            ["energy"] = Energy,
            ["whiten"] = Whiten,
            ["align"] = Align,
            ["router_rows"] = Name(RouterRows),
            ["propagation"] = Propagation == Quantization.Propagation.Compressed ? "compressed" : "original",
            ["profile"] = ProfileSource,
            ["calibration_tokens"] = CalibrationTokens,
            ["router_error_definition"] = ErrorDefinition,
            ["super_experts_kept_alone"] = new JsonArray(SuperExpertsKeptAlone.Select(s => (JsonNode?)new JsonObject
            {
                ["layer"] = s.Layer,
                ["expert"] = s.Expert,
                ["max_abs_output"] = Num(s.MaxAbsOutput),
            }).ToArray()),
            ["layers"] = new JsonArray(Layers.Select(l => (JsonNode?)LayerJson(l)).ToArray()),
        };
        if (Surgery is not null) root["sizes"] = Surgery.ToJson();
        root["notes"] = new JsonArray(Notes.Select(n => (JsonNode?)JsonValue.Create(n)).ToArray());
        root["elapsed_seconds"] = Math.Round(ElapsedSeconds, 3);
        return root;
    }

    private static JsonObject LayerJson(MergeLayerReport l) => new()
    {
        ["layer"] = l.Layer,
        ["mtp"] = l.Mtp,
        ["features"] = l.Features,
        ["router_row"] = Name(l.RouterRow),
        ["router_row_basis"] = l.RouterRowBasis,
        ["error_representative"] = Num(l.RepresentativeError),
        ["error_weighted"] = Num(l.WeightedError),
        ["measured_tokens"] = l.MeasuredTokens,
        ["clusters"] = new JsonArray(l.Clusters.Select(c =>
        {
            var o = new JsonObject
            {
                ["output_expert"] = c.OutputExpert,
                ["members"] = new JsonArray(c.Members.Select(m => (JsonNode?)JsonValue.Create(m)).ToArray()),
                ["weights"] = new JsonArray(c.Weights.Select(w => (JsonNode?)JsonValue.Create(Math.Round(w, 6))).ToArray()),
                ["representative"] = c.Representative,
                ["super_expert"] = c.SuperExpert,
            };
            if (c.Projections is not null)
                o["projections"] = new JsonObject(c.Projections.OrderBy(p => p.Key).Select(p => KeyValuePair.Create(Name(p.Key), (JsonNode?)new JsonObject
                {
                    ["rank_kept"] = p.Value.RankKept,
                    ["full_rank"] = p.Value.FullRank,
                    ["energy_kept"] = Math.Round(p.Value.EnergyKept, 6),
                    ["whitened"] = p.Value.Whitened,
                })));
            return (JsonNode?)o;
        }).ToArray()),
    };

    /// <summary>A Markdown summary: settings, sizes, one table of layers and one of clusters.</summary>
    public string ToMarkdown()
    {
        var c = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.Append("# Merge: ").Append(Path.GetFileName(Model.TrimEnd('/', '\\'))).Append(DryRun ? " (dry run)" : "").Append("\n\n");
        sb.Append(c, $"- {Family}: {InputExperts} → {OutputExperts} routed experts per MoE layer\n");
        sb.Append("- method: ").Append(Name(Method));
        if (Method == MergeMethod.Subspace)
            sb.Append(Rank is { } r ? $", rank {r}" : Energy is { } e ? string.Create(c, $", energy {e:0.###}") : "").Append(Whiten ? ", whitened" : "");
        sb.Append(Align ? "; neurons aligned" : "").Append("; clustering: ").Append(Name(Clustering))
          .Append(Clustering != ClusteringMethod.Hierarchical ? "" : MaxClusterSize is { } cap ? (cap <= 1 ? " (balanced)" : $" (at most {cap} per cluster)") : " (no size limit)").Append("; router rows: ").Append(Name(RouterRows)).Append('\n');
        sb.Append(c, $"- statistics: {ProfileSource} ({CalibrationTokens:N0} tokens)\n");
        sb.Append("- propagation: ").Append(Propagation == Quantization.Propagation.Compressed
            ? "compressed (one layer at a time: each layer clustered and measured on the outputs of the merged layers before it)"
            : "original (every layer measured on the original model)").Append('\n');
        sb.Append("- super experts kept alone: ")
          .Append(SuperExpertsKeptAlone.Count == 0 ? "none" : string.Join(", ", SuperExpertsKeptAlone.Select(s => $"layer {s.Layer} expert {s.Expert}")))
          .Append('\n');
        if (Surgery is not null)
            sb.Append(c, $"- output: `{Surgery.OutputDirectory}`, {Surgery.OutputTensorBytes:N0} of {Surgery.InputTensorBytes:N0} tensor bytes ({Surgery.SizeRatio:P1}), {Surgery.TensorsWritten} tensors\n");
        sb.Append(c, $"- {ElapsedSeconds:F1} s, moe-compress {ToolVersion}\n");
        foreach (var n in Notes) sb.Append("- note: ").Append(n).Append('\n');

        sb.Append("\n## Router rows per layer\n\n").Append(ErrorDefinition).Append(".\n\n");
        sb.Append("| layer | clusters merged | router row | error (representative) | error (weighted) | tokens | basis |\n|---:|---:|---|---:|---:|---:|---|\n");
        foreach (var l in Layers)
            sb.Append(c, $"| {l.Layer}{(l.Mtp ? " (MTP)" : "")} | {l.Clusters.Count(x => x.Members.Count > 1)} | {Name(l.RouterRow)} | {F(l.RepresentativeError)} | {F(l.WeightedError)} | {l.MeasuredTokens:N0} | {l.RouterRowBasis} |\n");

        sb.Append("\n## Clusters\n\n| layer | output expert | members (weight) | representative | gate rank / energy | up rank / energy | down rank / energy |\n|---:|---:|---|---:|---|---|---|\n");
        foreach (var l in Layers)
            foreach (var x in l.Clusters)
            {
                var members = string.Join(", ", x.Members.Select((m, i) => string.Create(c, $"{m} ({x.Weights[i]:0.###})")));
                if (x.SuperExpert) members += " — super expert";
                sb.Append(c, $"| {l.Layer} | {x.OutputExpert} | {members} | {x.Representative} | {P(x, ExpertProjection.Gate)} | {P(x, ExpertProjection.Up)} | {P(x, ExpertProjection.Down)} |\n");
            }
        return sb.ToString();
    }

    private static string P(MergeClusterReport c, ExpertProjection p) =>
        c.Projections is not null && c.Projections.TryGetValue(p, out var s)
            ? string.Create(CultureInfo.InvariantCulture, $"{s.RankKept}/{s.FullRank}, {s.EnergyKept:0.####}{(s.Whitened ? " (w)" : "")}")
            : c.Members.Count > 1 ? "–" : "copied";

    private static string F(double? v) => v is { } x ? x.ToString("0.000000", CultureInfo.InvariantCulture) : "–";

    private static JsonNode? Num(double? value) => value is { } v && double.IsFinite(v) ? JsonValue.Create(v) : null;

    /// <summary>Lower-case option spelling of an enum value ("kmeans", "subspace", "gate").</summary>
    public static string Name<T>(T value) where T : struct, Enum => value.ToString().ToLowerInvariant();
}
