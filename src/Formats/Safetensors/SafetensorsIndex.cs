using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Input;

namespace MoECompress.Formats.Safetensors;

/// <summary>
/// A sharded checkpoint's <c>model.safetensors.index.json</c>: <c>weight_map</c> (tensor name → shard file name) and
/// <c>metadata</c> (usually just <c>total_size</c>, the sum of tensor bytes).
/// </summary>
public sealed class SafetensorsIndex
{
    /// <summary>The file name transformers uses for the index of a sharded safetensors checkpoint.</summary>
    public const string FileName = "model.safetensors.index.json";

    private readonly Dictionary<string, string> _weightMap;

    /// <summary>Full path of the index file.</summary>
    public string Path { get; }

    /// <summary>Tensor names in the order the index lists them.</summary>
    public IReadOnlyList<string> TensorNames { get; }

    /// <summary>Tensor name → shard file name (relative to the index's directory).</summary>
    public IReadOnlyDictionary<string, string> WeightMap => _weightMap;

    /// <summary>The index's <c>metadata</c> object (a private copy), or null when absent.</summary>
    public JsonObject? Metadata { get; }

    /// <summary><c>metadata.total_size</c> when present and an integer.</summary>
    public long? TotalSize { get; }

    /// <summary>Things that are odd but would not stop transformers from loading (for example a non-integer total_size).</summary>
    public IReadOnlyList<string> Warnings { get; }

    private SafetensorsIndex(string path, List<string> names, Dictionary<string, string> weightMap, JsonObject? metadata,
        long? totalSize, List<string> warnings)
    {
        Path = path;
        TensorNames = names;
        _weightMap = weightMap;
        Metadata = metadata;
        TotalSize = totalSize;
        Warnings = warnings;
    }

    /// <summary>Reads and validates an index file (JSON object with a <c>weight_map</c> object of strings).</summary>
    /// <exception cref="CheckpointFormatException">Unreadable (<see cref="ErrorKind.Io"/>) or malformed.</exception>
    public static SafetensorsIndex Read(string path)
    {
        string full = System.IO.Path.GetFullPath(path);
        if (!File.Exists(full) && !System.IO.Directory.Exists(full))
            throw new CheckpointFormatException(full, null, null, "index file not found", ErrorKind.Io);
        JsonDocument doc;
        try
        {
            doc = StrictJson.ReadDocumentFile(full, JsonOptions);
        }
        catch (JsonFormatException e)
        {
            throw new CheckpointFormatException(full, null, e.Offset, $"index is not valid JSON at {e.JsonPath}: {e.Problem}");
        }
        return FromDocument(full, doc);
    }

    /// <summary>Parses index text already in memory (<paramref name="path"/> names it in errors); same checks as <see cref="Read"/>.</summary>
    /// <exception cref="CheckpointFormatException">Malformed.</exception>
    public static SafetensorsIndex Parse(string path, ReadOnlyMemory<byte> utf8)
    {
        JsonDocument doc;
        try
        {
            doc = StrictJson.ParseDocument(utf8, path, JsonOptions);
        }
        catch (JsonFormatException e)
        {
            throw new CheckpointFormatException(path, null, e.Offset, $"index is not valid JSON at {e.JsonPath}: {e.Problem}");
        }
        return FromDocument(path, doc);
    }

    private static readonly StrictJsonOptions JsonOptions = new() { Kind = ErrorKind.InvalidCheckpoint, What = "index" };

    private static SafetensorsIndex FromDocument(string full, JsonDocument doc)
    {
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw new CheckpointFormatException(full, null, null, $"index must be a JSON object, found {root.ValueKind}");
            if (!root.TryGetProperty("weight_map", out var map))
                throw new CheckpointFormatException(full, null, null, "index has no weight_map (tensor name → shard file)");
            if (map.ValueKind != JsonValueKind.Object)
                throw new CheckpointFormatException(full, null, null, $"index weight_map must be an object, found {map.ValueKind}");

            var names = new List<string>();
            var weightMap = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var entry in map.EnumerateObject())
            {
                if (entry.Value.ValueKind != JsonValueKind.String)
                    throw new CheckpointFormatException(full, entry.Name, null,
                        $"weight_map value must be a shard file name (string), found {entry.Value.ValueKind}");
                string shard = entry.Value.GetString()!;
                if (!IsSafeRelativeFileName(shard))
                    throw new CheckpointFormatException(full, entry.Name, null,
                        $"weight_map names shard '{shard}', which is not a relative path inside the checkpoint directory");
                if (!weightMap.TryAdd(entry.Name, shard))
                    throw new CheckpointFormatException(full, entry.Name, null,
                        $"weight_map lists the tensor twice ('{weightMap[entry.Name]}' and '{shard}')");
                names.Add(entry.Name);
            }

            var warnings = new List<string>();
            JsonObject? metadata = null;
            long? totalSize = null;
            if (root.TryGetProperty("metadata", out var meta) && meta.ValueKind != JsonValueKind.Null)
            {
                if (meta.ValueKind != JsonValueKind.Object)
                    throw new CheckpointFormatException(full, null, null, $"index metadata must be an object, found {meta.ValueKind}");
                metadata = JsonNode.Parse(meta.GetRawText())!.AsObject();
                if (meta.TryGetProperty("total_size", out var ts))
                {
                    if (ts.ValueKind == JsonValueKind.Number && ts.TryGetInt64(out long v) && v >= 0) totalSize = v;
                    else if (ts.ValueKind == JsonValueKind.Number && ts.TryGetDouble(out double d) && d >= 0 &&
                             d == Math.Floor(d) && d < 9.2e18) totalSize = (long)d;
                    else warnings.Add($"{full}: metadata.total_size is {ts.GetRawText()}, not a byte count; ignored");
                }
            }
            return new SafetensorsIndex(full, names, weightMap, metadata, totalSize, warnings);
        }
    }

    /// <summary>
    /// The JSON text transformers writes: <c>{"metadata": {"total_size": N}, "weight_map": {...}}</c> with keys sorted,
    /// two-space indentation and a final newline.
    /// </summary>
    public static byte[] Encode(IReadOnlyDictionary<string, string> weightMap, long totalSize)
    {
        var names = new string[weightMap.Count];
        int i = 0;
        foreach (var k in weightMap.Keys) names[i++] = k;
        Array.Sort(names, StringComparer.Ordinal);

        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions
               {
                   Indented = true, NewLine = "\n", Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
               }))
        {
            w.WriteStartObject();
            w.WriteStartObject("metadata");
            w.WriteNumber("total_size", totalSize);
            w.WriteEndObject();
            w.WriteStartObject("weight_map");
            foreach (var n in names) w.WriteString(n, weightMap[n]);
            w.WriteEndObject();
            w.WriteEndObject();
        }
        ms.WriteByte((byte)'\n');
        return ms.ToArray();
    }

    /// <summary>True for a relative path that stays inside its directory (no root, no "..", not empty).</summary>
    internal static bool IsSafeRelativeFileName(string name)
    {
        if (string.IsNullOrWhiteSpace(name) || System.IO.Path.IsPathRooted(name) || name.Contains('\0')) return false;
        foreach (var part in name.Split('/', '\\'))
            if (part.Length == 0 || part == "." || part == "..") return false;
        return true;
    }
}
