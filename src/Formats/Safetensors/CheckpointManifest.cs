using System.Globalization;
using System.Security.Cryptography;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using MoECompress.Formats.Errors;

namespace MoECompress.Formats.Safetensors;

/// <summary>
/// <c>moe-compress-manifest.json</c>, written by <see cref="CheckpointWriter.Commit"/> next to the weights: tool
/// version, UTC time, the command's options, tensor count and bytes, and every shard and other file with its size and
/// SHA-256. Extra top-level properties (for example an expert index map) are kept in <see cref="Json"/>.
/// </summary>
public sealed class CheckpointManifest
{
    /// <summary>File name of the manifest inside a checkpoint directory.</summary>
    public const string FileName = "moe-compress-manifest.json";

    internal static readonly string[] ReservedProperties =
        { "tool", "tool_version", "created_utc", "options", "tensor_count", "total_tensor_bytes", "shards", "files" };

    /// <summary>Full path of the manifest file read.</summary>
    public string Path { get; }

    /// <summary>Version of moe-compress that wrote the checkpoint.</summary>
    public string ToolVersion { get; }

    /// <summary>When the checkpoint was committed (UTC).</summary>
    public DateTimeOffset CreatedUtc { get; }

    /// <summary>The options recorded by the command, or null.</summary>
    public JsonObject? Options { get; }

    /// <summary>Number of tensors over all shards.</summary>
    public int TensorCount { get; }

    /// <summary>Sum of tensor bytes over all shards.</summary>
    public long TotalTensorBytes { get; }

    /// <summary>The weight shards.</summary>
    public IReadOnlyList<ManifestFileEntry> Shards { get; }

    /// <summary>Every other file of the checkpoint (index, config, tokenizer, ...), except the manifest itself.</summary>
    public IReadOnlyList<ManifestFileEntry> Files { get; }

    /// <summary>The whole manifest document.</summary>
    public JsonObject Json { get; }

    private CheckpointManifest(string path, JsonObject json, string toolVersion, DateTimeOffset created, JsonObject? options,
        int tensorCount, long totalBytes, List<ManifestFileEntry> shards, List<ManifestFileEntry> files)
    {
        Path = path;
        Json = json;
        ToolVersion = toolVersion;
        CreatedUtc = created;
        Options = options;
        TensorCount = tensorCount;
        TotalTensorBytes = totalBytes;
        Shards = shards;
        Files = files;
    }

    /// <summary>Reads the manifest of a checkpoint directory.</summary>
    /// <exception cref="CheckpointFormatException">Missing (<see cref="ErrorKind.Io"/>) or malformed manifest.</exception>
    public static CheckpointManifest Read(string directory)
    {
        string path = System.IO.Path.GetFullPath(System.IO.Path.Combine(directory, FileName));
        if (!File.Exists(path) && !System.IO.Directory.Exists(path))
            throw new CheckpointFormatException(path, null, null, "manifest not found", ErrorKind.Io);
        JsonObject json;
        try
        {
            json = Input.StrictJson.ReadObjectFile(path, new Input.StrictJsonOptions { Kind = ErrorKind.InvalidCheckpoint, What = "manifest" });
        }
        catch (Input.JsonFormatException e)
        {
            throw new CheckpointFormatException(path, null, e.Offset, $"manifest is not valid JSON at {e.JsonPath}: {e.Problem}");
        }
        try
        {
            string version = json["tool_version"]!.GetValue<string>();
            var created = DateTimeOffset.Parse(json["created_utc"]!.GetValue<string>(), CultureInfo.InvariantCulture,
                DateTimeStyles.AssumeUniversal);
            var options = json["options"] as JsonObject;
            int count = json["tensor_count"]!.GetValue<int>();
            long total = json["total_tensor_bytes"]!.GetValue<long>();
            return new CheckpointManifest(path, json, version, created, options, count, total,
                Entries(json["shards"]), Entries(json["files"]));
        }
        catch (Exception e) when (e is NullReferenceException or InvalidOperationException or FormatException)
        {
            throw new CheckpointFormatException(path, null, null, $"manifest is missing a field or has a wrong type ({e.Message})");
        }
    }

    private static List<ManifestFileEntry> Entries(JsonNode? node)
    {
        var list = new List<ManifestFileEntry>();
        if (node is not JsonArray array) return list;
        foreach (var item in array)
        {
            var o = item!.AsObject();
            list.Add(new ManifestFileEntry(o["file"]!.GetValue<string>(), o["bytes"]!.GetValue<long>(),
                o["sha256"]?.GetValue<string>())
            {
                TensorCount = o["tensor_count"]?.GetValue<int>(),
            });
        }
        return list;
    }

    /// <summary>
    /// Re-hashes every listed file under <paramref name="directory"/> and returns one line per problem (missing file,
    /// wrong size, wrong SHA-256; entries without a hash are checked by size only); empty when the checkpoint matches
    /// its manifest.
    /// </summary>
    public IReadOnlyList<string> Verify(string directory, CancellationToken cancellationToken = default)
    {
        var problems = new List<string>();
        foreach (var e in Concat(Shards, Files))
        {
            cancellationToken.ThrowIfCancellationRequested();
            string file = System.IO.Path.Combine(directory, e.File);
            if (!File.Exists(file)) { problems.Add($"{file}: listed in the manifest but missing"); continue; }
            long size = new FileInfo(file).Length;
            if (size != e.Bytes) { problems.Add($"{file}: {size} bytes, manifest says {e.Bytes}"); continue; }
            if (e.Sha256 is null) continue; // written without hashing: the size is all there is to check
            string sha = Sha256Hex(file, cancellationToken);
            if (!string.Equals(sha, e.Sha256, StringComparison.OrdinalIgnoreCase))
                problems.Add($"{file}: SHA-256 {sha}, manifest says {e.Sha256}");
        }
        return problems;
    }

    private static IEnumerable<ManifestFileEntry> Concat(IReadOnlyList<ManifestFileEntry> a, IReadOnlyList<ManifestFileEntry> b)
    {
        foreach (var x in a) yield return x;
        foreach (var x in b) yield return x;
    }

    /// <summary>SHA-256 of a file as lower-case hex, read in 16 MiB chunks.</summary>
    public static string Sha256Hex(string path, CancellationToken cancellationToken = default)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan);
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = new byte[1 << 20];
        int n;
        while ((n = stream.Read(buffer)) > 0)
        {
            cancellationToken.ThrowIfCancellationRequested();
            sha.AppendData(buffer, 0, n);
        }
        return Convert.ToHexStringLower(sha.GetHashAndReset());
    }

    /// <summary>Builds the manifest document the writer commits.</summary>
    internal static byte[] Encode(string toolVersion, DateTimeOffset createdUtc, JsonObject? options, int tensorCount,
        long totalTensorBytes, IReadOnlyList<ManifestFileEntry> shards, IReadOnlyList<ManifestFileEntry> files,
        JsonObject? extra)
    {
        var root = new JsonObject
        {
            ["tool"] = "moe-compress",
            ["tool_version"] = toolVersion,
            ["created_utc"] = createdUtc.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture),
            ["options"] = options?.DeepClone(),
            ["tensor_count"] = tensorCount,
            ["total_tensor_bytes"] = totalTensorBytes,
            ["shards"] = ToArray(shards),
            ["files"] = ToArray(files),
        };
        if (extra is not null)
            foreach (var kv in extra) root[kv.Key] = kv.Value?.DeepClone();
        var text = root.ToJsonString(new JsonSerializerOptions
        {
            WriteIndented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping, NewLine = "\n",
        });
        return System.Text.Encoding.UTF8.GetBytes(text + "\n");
    }

    private static JsonArray ToArray(IReadOnlyList<ManifestFileEntry> entries)
    {
        var a = new JsonArray();
        foreach (var e in entries)
        {
            var o = new JsonObject { ["file"] = e.File, ["bytes"] = e.Bytes };
            if (e.Sha256 is not null) o["sha256"] = e.Sha256;
            if (e.TensorCount is { } c) o["tensor_count"] = c;
            a.Add(o);
        }
        return a;
    }
}
