using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using MoECompress.Formats.Gguf;

namespace MoECompress.Compression.Gguf;

/// <summary>What <see cref="GgufExporter.Run"/> did: the file, its size against the input, the type of every tensor,
/// the fallbacks (rows that are not whole blocks), the experts quantized without importance, and notes.</summary>
public sealed record GgufExportReport
{
    public required GgufExportOptions Options { get; init; }
    public required string Model { get; init; }
    public required string Family { get; init; }
    public required string Architecture { get; init; }
    public string? Output { get; init; }
    public required long InputBytes { get; init; }
    public required long PredictedBytes { get; init; }
    public long? ActualBytes { get; init; }
    /// <summary>Name, requested type, written type, bytes — every tensor.</summary>
    public required IReadOnlyList<(string Name, GgmlType Requested, GgmlType Type, long Bytes)> Tensors { get; init; }
    /// <summary>Stored bits per routed-expert weight (scales included).</summary>
    public required double ExpertBitsPerWeight { get; init; }
    /// <summary>(layer, expert, routed tokens) quantized without importance weights.</summary>
    public required IReadOnlyList<(int Layer, int Expert, long Tokens)> UnweightedExperts { get; init; }
    public required IReadOnlyList<string> Notes { get; init; }
    public required IReadOnlyDictionary<string, double> Seconds { get; init; }

    public int FallbackCount => Tensors.Count(t => t.Requested != t.Type);

    public JsonObject ToJsonObject() => new()
    {
        ["format"] = "gguf",
        ["options"] = Options.ToJsonObject(),
        ["model"] = Model,
        ["family"] = Family,
        ["architecture"] = Architecture,
        ["output"] = Output,
        ["input_bytes"] = InputBytes,
        ["predicted_bytes"] = PredictedBytes,
        ["actual_bytes"] = ActualBytes,
        ["size_ratio"] = ActualBytes is { } a ? (double)a / InputBytes : (double)PredictedBytes / InputBytes,
        ["expert_bits_per_weight"] = ExpertBitsPerWeight,
        ["fallbacks"] = FallbackCount,
        ["tensors"] = new JsonArray(Tensors.Select(t => (JsonNode?)new JsonObject
        {
            ["name"] = t.Name, ["requested"] = t.Requested.ToName(), ["type"] = t.Type.ToName(), ["bytes"] = t.Bytes,
        }).ToArray()),
        ["unweighted_experts"] = new JsonArray(UnweightedExperts.Select(c => (JsonNode?)new JsonObject
        {
            ["layer"] = c.Layer, ["expert"] = c.Expert, ["tokens"] = c.Tokens,
        }).ToArray()),
        ["notes"] = new JsonArray(Notes.Select(n => (JsonNode?)n).ToArray()),
        ["seconds"] = new JsonObject(Seconds.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)Math.Round(kv.Value, 3)))),
    };

    public string ToMarkdown()
    {
        var inv = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.AppendLine($"# GGUF export ({Architecture})");
        sb.AppendLine();
        sb.AppendLine($"- model: {Model} ({Family})");
        sb.AppendLine($"- output: {Output ?? "(dry run)"}");
        var bytes = ActualBytes ?? PredictedBytes;
        sb.AppendLine(string.Create(inv, $"- size: {bytes:N0} bytes ({(double)bytes / InputBytes:0.###}× the input's {InputBytes:N0}){(ActualBytes is null ? " predicted" : "")}"));
        sb.AppendLine(string.Create(inv, $"- routed experts: {ExpertBitsPerWeight:0.###} stored bits per weight"));
        sb.AppendLine($"- fallbacks (rows not whole blocks): {FallbackCount}");
        sb.AppendLine($"- experts quantized without importance (too few routed tokens): {UnweightedExperts.Count}");
        sb.AppendLine();
        sb.AppendLine("| type | tensors | bytes |");
        sb.AppendLine("|---|---:|---:|");
        foreach (var g in Tensors.GroupBy(t => t.Type).OrderByDescending(g => g.Sum(t => t.Bytes)))
            sb.AppendLine(string.Create(inv, $"| {g.Key.ToName()} | {g.Count()} | {g.Sum(t => t.Bytes):N0} |"));
        var fell = Tensors.Where(t => t.Requested != t.Type).GroupBy(t => (t.Requested, t.Type)).ToList();
        if (fell.Count > 0)
        {
            sb.AppendLine();
            foreach (var g in fell) sb.AppendLine($"- fallback {g.Key.Requested.ToName()} → {g.Key.Type.ToName()}: {g.Count()} tensors (e.g. {g.First().Name})");
        }
        if (Notes.Count > 0)
        {
            sb.AppendLine();
            foreach (var n in Notes) sb.AppendLine($"- {n}");
        }
        return sb.ToString();
    }
}
