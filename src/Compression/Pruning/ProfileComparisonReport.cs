using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace MoECompress.Compression.Pruning;

/// <summary>
/// The result of <see cref="ProfileComparison.Compare"/> (<c>moe-compress profiles compare</c>): per MoE layer, each
/// profile's top-<see cref="Keep"/> experts under <see cref="Method"/>, the Jaccard overlap of every pair and the
/// experts all profiles share; plus each pair's mean over layers. Low overlap means the tasks use different experts, so
/// task-adaptive pruning (a task's own profile) keeps different experts than a general one.
/// </summary>
public sealed record ProfileComparisonReport
{
    /// <summary>The scorer.</summary>
    public required string Method { get; init; }
    /// <summary>Experts per top set.</summary>
    public required int Keep { get; init; }
    /// <summary>E.</summary>
    public required int NumExperts { get; init; }
    /// <summary>Profile name → one line saying where its statistics came from, in input order.</summary>
    public required IReadOnlyList<KeyValuePair<string, string>> Profiles { get; init; }
    /// <summary>Every MoE layer.</summary>
    public required IReadOnlyList<LayerOverlap> Layers { get; init; }
    /// <summary>Every pair: mean Jaccard over layers and total common experts.</summary>
    public required IReadOnlyList<ProfileOverlap> MeanOverlaps { get; init; }

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
        static JsonArray Ints(IEnumerable<int> xs) => new(xs.Select(x => (JsonNode)x).ToArray());
        static JsonObject Pair(ProfileOverlap p) => new()
        {
            ["first"] = p.First, ["second"] = p.Second, ["jaccard"] = Math.Round(p.Jaccard, 6), ["common"] = p.Common,
        };
        return new JsonObject
        {
            ["tool"] = "moe-compress",
            ["operation"] = "profiles-compare",
            ["method"] = Method,
            ["keep"] = Keep,
            ["num_experts"] = NumExperts,
            ["profiles"] = new JsonArray(Profiles.Select(p => (JsonNode)new JsonObject { ["name"] = p.Key, ["source"] = p.Value }).ToArray()),
            ["mean_overlaps"] = new JsonArray(MeanOverlaps.Select(p => (JsonNode)Pair(p)).ToArray()),
            ["layers"] = new JsonArray(Layers.Select(l => (JsonNode)new JsonObject
            {
                ["layer"] = l.Layer,
                ["top_experts"] = new JsonObject(l.TopExperts.Select(t => KeyValuePair.Create(t.Key, (JsonNode?)Ints(t.Value)))),
                ["pairs"] = new JsonArray(l.Pairs.Select(p => (JsonNode)Pair(p)).ToArray()),
                ["shared"] = Ints(l.Shared),
            }).ToArray()),
        };
    }

    /// <summary>The report as Markdown.</summary>
    public string ToMarkdown()
    {
        var c = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.AppendLine("# Calibration profile comparison");
        sb.AppendLine();
        sb.AppendLine(c, $"Top {Keep} of {NumExperts} experts per MoE layer by **{Method}**; overlap = Jaccard |A∩B| / |A∪B|.");
        sb.AppendLine();
        foreach (var (name, source) in Profiles) sb.AppendLine(c, $"- **{name}**: {source}");
        sb.AppendLine();
        sb.AppendLine("## Mean overlap over layers");
        sb.AppendLine();
        sb.AppendLine("| profiles | mean Jaccard | common experts (all layers) |");
        sb.AppendLine("|---|---:|---:|");
        foreach (var p in MeanOverlaps) sb.AppendLine(c, $"| {p.First} / {p.Second} | {p.Jaccard:F3} | {p.Common} |");
        sb.AppendLine();
        sb.AppendLine("## Layers");
        sb.AppendLine();
        var names = Profiles.Select(p => p.Key).ToList();
        var pairNames = MeanOverlaps.Select(p => $"{p.First}/{p.Second}").ToList();
        sb.AppendLine($"| layer | {string.Join(" | ", names.Select(n => $"top {Keep}: {n}"))} | {string.Join(" | ", pairNames.Select(n => $"Jaccard {n}"))} | shared by all |");
        sb.AppendLine($"|---:|{string.Concat(Enumerable.Repeat("---|", names.Count))}{string.Concat(Enumerable.Repeat("---:|", pairNames.Count))}---|");
        foreach (var l in Layers)
        {
            var tops = string.Join(" | ", l.TopExperts.Select(t => string.Join(", ", t.Value)));
            var pairs = string.Join(" | ", l.Pairs.Select(p => p.Jaccard.ToString("F3", c)));
            sb.AppendLine(c, $"| {l.Layer} | {tops} | {pairs} | {string.Join(", ", l.Shared)} |");
        }
        return sb.ToString();
    }
}
