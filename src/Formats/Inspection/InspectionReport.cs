using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace MoECompress.Formats.Inspection;

/// <summary>Tensor count and bytes of one dtype.</summary>
public sealed record DTypeStatistics(int Tensors, long Bytes);

/// <summary>One decoder or MTP layer: dense or MoE, its experts, and its parameters (total and active per token).</summary>
public sealed record LayerSummary(int Index, string Kind, bool Mtp, int Experts, long Parameters, long ActiveParameters);

/// <summary>Bytes or parameters per component of the model.</summary>
public sealed record ComponentSizes
{
    public long Attention { get; init; }
    public long RoutedExperts { get; init; }
    public long SharedExperts { get; init; }
    public long DenseMlp { get; init; }
    /// <summary>Token embeddings and the LM head (MTP copies included).</summary>
    public long Embeddings { get; init; }
    /// <summary>Router weights, router biases, correction biases.</summary>
    public long Router { get; init; }
    public long Norms { get; init; }
    /// <summary>Everything else: vision tower, MTP projections, unknown tensors.</summary>
    public long Other { get; init; }

    public long Total => Attention + RoutedExperts + SharedExperts + DenseMlp + Embeddings + Router + Norms + Other;
}

/// <summary>
/// What <see cref="CheckpointInspector.Inspect(string)"/> found: the MoE structure, the dtypes, parameter counts (total
/// and active per token) and where the bytes go. Parameters are logical values (an MXFP4 byte holds two); quantization
/// scales count as bytes but not parameters. Active parameters cover the main model for one token: everything except
/// routed experts, plus top-k routed experts per MoE layer (shared experts are always active); MTP layers and the
/// vision tower are not active. <see cref="ToJson"/> uses stable camelCase names.
/// </summary>
public sealed record InspectionReport
{
    public required string Directory { get; init; }
    public required string Family { get; init; }
    public required string Architecture { get; init; }
    public required int HiddenSize { get; init; }
    public required int VocabSize { get; init; }
    public required int NumLayers { get; init; }
    [JsonPropertyName("moeLayers")]
    public required int MoELayers { get; init; }
    public required int DenseLayers { get; init; }
    public required IReadOnlyList<LayerSummary> Layers { get; init; }
    public required int ExpertsPerLayer { get; init; }
    public required int TopK { get; init; }
    public required int ExpertIntermediateSize { get; init; }
    public required int DenseIntermediateSize { get; init; }
    public required int Groups { get; init; }
    public required int TopKGroups { get; init; }
    public required string Scoring { get; init; }
    public required bool NormTopKProb { get; init; }
    public required double RoutedScalingFactor { get; init; }
    public required bool RouterBias { get; init; }
    public required bool CorrectionBias { get; init; }
    public required int SharedExperts { get; init; }
    public required int SharedExpertIntermediateSize { get; init; }
    public required bool SharedExpertGate { get; init; }
    /// <summary>MTP layers config.json declares.</summary>
    public required int MtpLayers { get; init; }
    /// <summary>MTP layers whose tensors are stored.</summary>
    public required IReadOnlyList<int> MtpLayersPresent { get; init; }
    public required bool FusedExperts { get; init; }
    public required bool Mxfp4Experts { get; init; }
    public required bool TieWordEmbeddings { get; init; }
    public required int TensorCount { get; init; }
    public required int ShardCount { get; init; }
    public required long TotalBytes { get; init; }
    /// <summary>dtype header name → tensors and bytes, sorted by name.</summary>
    [JsonPropertyName("dtypes")]
    public required IReadOnlyDictionary<string, DTypeStatistics> DTypes { get; init; }
    public required long TotalParameters { get; init; }
    public required long ActiveParameters { get; init; }
    /// <summary>config.json compressed_experts.aux of a substituted checkpoint (top-k − aux experts computed per token), else null (and absent from the JSON).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public int? CompressedExpertsAux { get; init; }
    public required long RoutedExpertParameters { get; init; }
    /// <summary>Parameters of one routed expert (all projections and biases).</summary>
    public required long ParametersPerExpert { get; init; }
    /// <summary>Parameters stored in MTP layers (in the total, not in the active count).</summary>
    public required long MtpParameters { get; init; }
    public required ComponentSizes Bytes { get; init; }
    public required ComponentSizes Parameters { get; init; }

    private static readonly JsonSerializerOptions JsonOptions = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        WriteIndented = true,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.CamelCase) },
    };

    /// <summary>The report as indented JSON (camelCase property names, dtype keys as in safetensors headers).</summary>
    public string ToJson() => JsonSerializer.Serialize(this, JsonOptions);

    /// <summary>A compact human-readable summary with a component table.</summary>
    public string ToText()
    {
        var sb = new StringBuilder();
        var ci = CultureInfo.InvariantCulture;
        void Line(string label, string value) => sb.Append(ci, $"{label,-12} {value}\n");

        Line("checkpoint", Directory);
        Line("family", $"{Family} ({Architecture})");
        Line("model", $"hidden {HiddenSize}, vocabulary {VocabSize}" + (TieWordEmbeddings ? ", tied embeddings" : ""));
        Line("layers", $"{NumLayers}: {MoELayers} MoE, {DenseLayers} dense" + (DenseLayers > 0 ? $" (intermediate {DenseIntermediateSize})" : "")
            + $"; {LayerRanges()}");
        Line("experts", $"{ExpertsPerLayer} routed per MoE layer, top-{TopK}, intermediate {ExpertIntermediateSize}, "
            + $"{Scoring}{(NormTopKProb ? ", renormalised" : "")}"
            + (RoutedScalingFactor != 1.0 ? $", scaled ×{RoutedScalingFactor.ToString(ci)}" : "")
            + (FusedExperts ? ", fused" : ", per expert") + (Mxfp4Experts ? " MXFP4" : ""));
        if (CompressedExpertsAux is { } aux)
            Line("compressed", $"compressed experts: {TopK - aux} of top-{TopK} computed, {aux} replaced by trained vectors (moe-compress engine only)");
        if (Groups > 1) Line("groups", $"{Groups} groups, top-{TopKGroups} groups per token");
        if (RouterBias || CorrectionBias) Line("router", (RouterBias ? "bias" : "") + (RouterBias && CorrectionBias ? ", " : "") + (CorrectionBias ? "e_score_correction_bias" : ""));
        Line("shared", SharedExperts == 0 ? "none"
            : $"{SharedExperts} expert(s), intermediate {SharedExpertIntermediateSize}" + (SharedExpertGate ? ", sigmoid gate" : ""));
        Line("mtp", MtpLayers == 0 && MtpLayersPresent.Count == 0 ? "none"
            : $"{MtpLayers} declared, {MtpLayersPresent.Count} stored" + (MtpLayersPresent.Count > 0 ? $" (layer {string.Join(", ", MtpLayersPresent)})" : ""));
        Line("parameters", $"{Count(TotalParameters)} total, {Count(ActiveParameters)} active per token "
            + $"({(TotalParameters == 0 ? 0 : 100.0 * ActiveParameters / TotalParameters).ToString("F1", ci)}%), "
            + $"{Count(ParametersPerExpert)} per expert");
        Line("tensors", $"{TensorCount} in {ShardCount} shard(s), {Size(TotalBytes)}");
        Line("dtypes", string.Join("; ", DTypes.Select(kv => $"{kv.Key} {kv.Value.Tensors} tensors {Size(kv.Value.Bytes)}")));
        sb.Append('\n');
        sb.Append(ci, $"{"component",-16}{"bytes",14}{"share",8}{"parameters",14}\n");
        void Row(string name, long bytes, long parameters) =>
            sb.Append(ci, $"{name,-16}{Size(bytes),14}{(TotalBytes == 0 ? 0 : 100.0 * bytes / TotalBytes).ToString("F1", ci) + "%",8}{Count(parameters),14}\n");
        Row("attention", Bytes.Attention, Parameters.Attention);
        Row("routed experts", Bytes.RoutedExperts, Parameters.RoutedExperts);
        Row("shared experts", Bytes.SharedExperts, Parameters.SharedExperts);
        Row("dense mlp", Bytes.DenseMlp, Parameters.DenseMlp);
        Row("embeddings", Bytes.Embeddings, Parameters.Embeddings);
        Row("router", Bytes.Router, Parameters.Router);
        Row("norms", Bytes.Norms, Parameters.Norms);
        Row("other", Bytes.Other, Parameters.Other);
        Row("total", Bytes.Total, Parameters.Total);
        return sb.ToString();
    }

    /// <summary>"0-2 dense, 3-60 moe, 61 mtp-moe": consecutive layers of the same kind folded into ranges.</summary>
    private string LayerRanges()
    {
        var parts = new List<string>();
        int i = 0;
        while (i < Layers.Count)
        {
            int j = i;
            string kind = (Layers[i].Mtp ? "mtp-" : "") + Layers[i].Kind;
            while (j + 1 < Layers.Count && (Layers[j + 1].Mtp ? "mtp-" : "") + Layers[j + 1].Kind == kind) j++;
            parts.Add(i == j ? $"{Layers[i].Index} {kind}" : $"{Layers[i].Index}-{Layers[j].Index} {kind}");
            i = j + 1;
        }
        return string.Join(", ", parts);
    }

    /// <summary>Bytes in binary units (B, KiB, MiB, GiB, TiB).</summary>
    public static string Size(long bytes)
    {
        string[] units = ["B", "KiB", "MiB", "GiB", "TiB"];
        double v = bytes;
        int u = 0;
        while (v >= 1024 && u < units.Length - 1) { v /= 1024; u++; }
        return u == 0 ? $"{bytes} B" : v.ToString(v >= 100 ? "F0" : v >= 10 ? "F1" : "F2", CultureInfo.InvariantCulture) + " " + units[u];
    }

    /// <summary>A count with K/M/B/T suffix (decimal).</summary>
    public static string Count(long n)
    {
        string[] units = ["", "K", "M", "B", "T"];
        double v = n;
        int u = 0;
        while (Math.Abs(v) >= 1000 && u < units.Length - 1) { v /= 1000; u++; }
        return u == 0 ? n.ToString(CultureInfo.InvariantCulture) : v.ToString(v >= 100 ? "F0" : v >= 10 ? "F1" : "F2", CultureInfo.InvariantCulture) + units[u];
    }
}
