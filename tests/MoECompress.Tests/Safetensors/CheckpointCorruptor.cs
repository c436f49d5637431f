using System.Buffers.Binary;
using System.Text;
using System.Text.Json.Nodes;

namespace MoECompress.Tests.Safetensors;

/// <summary>
/// What a corrupted copy is expected to produce when opened: the file the error must name, the tensor (when the
/// problem is about one) and the byte offset (when it is known exactly), and a fragment of the problem text.
/// </summary>
/// <param name="Kind">The corruption's name (one of <see cref="CheckpointCorruptor.Kinds"/>).</param>
/// <param name="Directory">The corrupted checkpoint folder.</param>
/// <param name="AffectedFile">Full path of the file the error message must name.</param>
/// <param name="TensorName">The tensor the error must name, or null.</param>
/// <param name="Offset">The byte offset the error must give, or null when none applies.</param>
/// <param name="ProblemFragment">Text the message contains (identifies which check fired).</param>
public sealed record CorruptedCheckpoint(string Kind, string Directory, string AffectedFile, string? TensorName, long? Offset,
    string ProblemFragment);

/// <summary>
/// Makes corrupted copies of a good checkpoint folder, one kind of damage each, for reader tests and CLI exit-code
/// tests. Every method copies <c>goodDir</c> to <c>outputDir</c> (which must not exist), damages the copy and says what
/// the error should look like. Shard-level kinds damage the first weight file (by name); index kinds need a sharded
/// checkpoint with at least two tensors in its last shard (see <see cref="SafetensorsFixtures.CreateSharded"/>).
/// The original is never modified.
/// </summary>
public static class CheckpointCorruptor
{
    private static readonly Dictionary<string, Func<string, string, CorruptedCheckpoint>> ByKind = new()
    {
        ["truncated-data"] = TruncatedData,
        ["header-length-past-eof"] = HeaderLengthPastEndOfFile,
        ["header-length-absurd"] = HeaderLengthAbsurd,
        ["header-not-utf8"] = HeaderNotUtf8,
        ["header-invalid-json"] = HeaderInvalidJson,
        ["header-not-object"] = HeaderNotObject,
        ["unknown-dtype"] = UnknownDType,
        ["missing-data-offsets"] = MissingDataOffsets,
        ["negative-shape"] = NegativeShape,
        ["non-integer-shape"] = NonIntegerShape,
        ["byte-count-mismatch"] = ByteCountMismatch,
        ["offsets-out-of-range"] = OffsetsOutOfRange,
        ["overlapping-offsets"] = OverlappingOffsets,
        ["gap-between-tensors"] = GapBetweenTensors,
        ["trailing-bytes"] = TrailingBytes,
        ["duplicate-tensor-name"] = DuplicateTensorName,
        ["non-string-metadata"] = NonStringMetadata,
        ["index-not-json"] = IndexNotJson,
        ["index-without-weight-map"] = IndexWithoutWeightMap,
        ["index-missing-shard"] = IndexMissingShard,
        ["index-tensor-missing-from-shard"] = IndexTensorMissingFromShard,
        ["shard-tensor-missing-from-index"] = ShardTensorMissingFromIndex,
        ["tensor-in-two-shards"] = TensorInTwoShards,
    };

    /// <summary>Every corruption kind.</summary>
    public static IReadOnlyList<string> Kinds { get; } = ByKind.Keys.ToArray();

    /// <summary>Kinds that damage the index and therefore need a sharded checkpoint.</summary>
    public static IReadOnlyList<string> IndexKinds { get; } = new[]
    {
        "index-not-json", "index-without-weight-map", "index-missing-shard", "index-tensor-missing-from-shard",
        "shard-tensor-missing-from-index", "tensor-in-two-shards",
    };

    /// <summary>Applies the corruption named <paramref name="kind"/>.</summary>
    public static CorruptedCheckpoint Apply(string kind, string goodDir, string outputDir) =>
        ByKind.TryGetValue(kind, out var f) ? f(goodDir, outputDir)
            : throw new ArgumentException($"unknown corruption '{kind}' (known: {string.Join(", ", Kinds)})", nameof(kind));

    // ------------------------------------------------------------------ length prefix and raw bytes

    /// <summary>The last 3 bytes of the first shard are cut off: its last tensor extends past the end.</summary>
    public static CorruptedCheckpoint TruncatedData(string goodDir, string outputDir)
    {
        var shard = Prepare(goodDir, outputDir);
        var last = shard.Entries[^1];
        File.WriteAllBytes(shard.Path, shard.Bytes[..^3]);
        return new("truncated-data", outputDir, shard.Path, last.Name, shard.DataStart + last.Begin, "extend past the end");
    }

    /// <summary>The header length prefix is one more than the bytes that follow it.</summary>
    public static CorruptedCheckpoint HeaderLengthPastEndOfFile(string goodDir, string outputDir)
    {
        var shard = Prepare(goodDir, outputDir);
        var bytes = (byte[])shard.Bytes.Clone();
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)(bytes.Length - 8 + 1));
        File.WriteAllBytes(shard.Path, bytes);
        return new("header-length-past-eof", outputDir, shard.Path, null, 0, "extends past the end of the file");
    }

    /// <summary>The header length prefix is 2^40 (far over the 100 MB limit).</summary>
    public static CorruptedCheckpoint HeaderLengthAbsurd(string goodDir, string outputDir)
    {
        var shard = Prepare(goodDir, outputDir);
        var bytes = (byte[])shard.Bytes.Clone();
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, 1UL << 40);
        File.WriteAllBytes(shard.Path, bytes);
        return new("header-length-absurd", outputDir, shard.Path, null, 0, "exceeds the 100000000-byte limit");
    }

    /// <summary>The first byte of the first tensor's name in the header becomes 0xFF (invalid UTF-8).</summary>
    public static CorruptedCheckpoint HeaderNotUtf8(string goodDir, string outputDir)
    {
        var shard = Prepare(goodDir, outputDir);
        var bytes = (byte[])shard.Bytes.Clone();
        int at = 8 + IndexOf(shard.Bytes.AsSpan(8, shard.HeaderLength), "\"" + shard.Entries[0].Name + "\"") + 1;
        bytes[at] = 0xFF;
        File.WriteAllBytes(shard.Path, bytes);
        return new("header-not-utf8", outputDir, shard.Path, null, at, "not valid UTF-8");
    }

    /// <summary>The header's second byte (the quote opening the first key) becomes 'x'.</summary>
    public static CorruptedCheckpoint HeaderInvalidJson(string goodDir, string outputDir)
    {
        var shard = Prepare(goodDir, outputDir);
        var bytes = (byte[])shard.Bytes.Clone();
        bytes[9] = (byte)'x';
        File.WriteAllBytes(shard.Path, bytes);
        return new("header-invalid-json", outputDir, shard.Path, null, 9, "not valid JSON");
    }

    /// <summary>The header is a JSON array.</summary>
    public static CorruptedCheckpoint HeaderNotObject(string goodDir, string outputDir)
    {
        var shard = Prepare(goodDir, outputDir);
        shard.Write("[1, 2, 3]", shard.Data);
        return new("header-not-object", outputDir, shard.Path, null, 8, "must be a JSON object");
    }

    // ------------------------------------------------------------------ entries

    /// <summary>The first tensor's dtype becomes "F4".</summary>
    public static CorruptedCheckpoint UnknownDType(string goodDir, string outputDir)
    {
        var shard = Prepare(goodDir, outputDir);
        var name = shard.Entries[0].Name;
        shard.Json[name]!["dtype"] = "F4";
        string text = shard.Json.ToJsonString();
        shard.Write(text, shard.Data);
        return new("unknown-dtype", outputDir, shard.Path, name, 8 + ByteIndex(text, "\"F4\"", After(text, name)),
            "unknown dtype 'F4'");
    }

    /// <summary>The first tensor has no data_offsets.</summary>
    public static CorruptedCheckpoint MissingDataOffsets(string goodDir, string outputDir)
    {
        var shard = Prepare(goodDir, outputDir);
        var name = shard.Entries[0].Name;
        shard.Json[name]!.AsObject().Remove("data_offsets");
        string text = shard.Json.ToJsonString();
        shard.Write(text, shard.Data);
        return new("missing-data-offsets", outputDir, shard.Path, name, 8 + ByteIndex(text, $"\"{name}\"", 0),
            "no data_offsets");
    }

    /// <summary>The first tensor's first dimension becomes -1.</summary>
    public static CorruptedCheckpoint NegativeShape(string goodDir, string outputDir)
    {
        var shard = Prepare(goodDir, outputDir);
        var name = shard.Entries[0].Name;
        shard.Json[name]!["shape"]![0] = -1;
        string text = shard.Json.ToJsonString();
        shard.Write(text, shard.Data);
        return new("negative-shape", outputDir, shard.Path, name, 8 + ByteIndex(text, "-1", After(text, name)), "negative");
    }

    /// <summary>The first tensor's first dimension becomes 2.5.</summary>
    public static CorruptedCheckpoint NonIntegerShape(string goodDir, string outputDir)
    {
        var shard = Prepare(goodDir, outputDir);
        var name = shard.Entries[0].Name;
        shard.Json[name]!["shape"]![0] = 2.5;
        string text = shard.Json.ToJsonString();
        shard.Write(text, shard.Data);
        return new("non-integer-shape", outputDir, shard.Path, name, 8 + ByteIndex(text, "2.5", After(text, name)),
            "not a non-negative integer");
    }

    /// <summary>The first tensor's first dimension grows by one, so shape × item size no longer equals end − begin.</summary>
    public static CorruptedCheckpoint ByteCountMismatch(string goodDir, string outputDir)
    {
        var shard = Prepare(goodDir, outputDir);
        var first = shard.Entries[0];
        var shape = shard.Json[first.Name]!["shape"]!;
        shape[0] = shape[0]!.GetValue<long>() + 1;
        long dataStart = shard.Write(shard.Json.ToJsonString(), shard.Data);
        return new("byte-count-mismatch", outputDir, shard.Path, first.Name, dataStart + first.Begin, "needs");
    }

    /// <summary>The last tensor's offsets move 8 bytes past the end of the data section.</summary>
    public static CorruptedCheckpoint OffsetsOutOfRange(string goodDir, string outputDir)
    {
        var shard = Prepare(goodDir, outputDir);
        var last = shard.Entries[^1];
        shard.Json[last.Name]!["data_offsets"] = new JsonArray(last.Begin + 8, last.End + 8);
        long dataStart = shard.Write(shard.Json.ToJsonString(), shard.Data);
        return new("offsets-out-of-range", outputDir, shard.Path, last.Name, dataStart + last.Begin + 8, "extend past the end");
    }

    /// <summary>The second tensor's offsets move one byte down, into the first tensor's data.</summary>
    public static CorruptedCheckpoint OverlappingOffsets(string goodDir, string outputDir)
    {
        var shard = Prepare(goodDir, outputDir);
        var second = shard.Entries[1];
        shard.Json[second.Name]!["data_offsets"] = new JsonArray(second.Begin - 1, second.End - 1);
        long dataStart = shard.Write(shard.Json.ToJsonString(), shard.Data);
        return new("overlapping-offsets", outputDir, shard.Path, second.Name, dataStart + second.Begin - 1, "overlap");
    }

    /// <summary>8 unused bytes are inserted between the first and second tensors (later offsets shifted).</summary>
    public static CorruptedCheckpoint GapBetweenTensors(string goodDir, string outputDir)
    {
        var shard = Prepare(goodDir, outputDir);
        var first = shard.Entries[0];
        for (int i = 1; i < shard.Entries.Count; i++)
        {
            var e = shard.Entries[i];
            shard.Json[e.Name]!["data_offsets"] = new JsonArray(e.Begin + 8, e.End + 8);
        }
        var data = new byte[shard.Data.Length + 8];
        shard.Data.AsSpan(0, (int)first.End).CopyTo(data);
        shard.Data.AsSpan((int)first.End).CopyTo(data.AsSpan((int)first.End + 8));
        long dataStart = shard.Write(shard.Json.ToJsonString(), data);
        return new("gap-between-tensors", outputDir, shard.Path, shard.Entries[1].Name, dataStart + first.End, "gap of 8");
    }

    /// <summary>16 bytes are appended after the last tensor.</summary>
    public static CorruptedCheckpoint TrailingBytes(string goodDir, string outputDir)
    {
        var shard = Prepare(goodDir, outputDir);
        File.WriteAllBytes(shard.Path, shard.Bytes.Concat(new byte[16]).ToArray());
        return new("trailing-bytes", outputDir, shard.Path, shard.Entries[^1].Name, shard.DataStart + shard.Data.Length,
            "16 trailing bytes");
    }

    /// <summary>The second tensor is renamed to the first tensor's name in the header text.</summary>
    public static CorruptedCheckpoint DuplicateTensorName(string goodDir, string outputDir)
    {
        var shard = Prepare(goodDir, outputDir);
        string first = shard.Entries[0].Name, second = shard.Entries[1].Name;
        string text = shard.HeaderText.Replace($"\"{second}\":", $"\"{first}\":");
        shard.Write(text, shard.Data);
        int firstAt = ByteIndex(text, $"\"{first}\":", 0);
        return new("duplicate-tensor-name", outputDir, shard.Path, first, 8 + ByteIndex(text, $"\"{first}\":", firstAt + 1),
            "duplicate tensor name");
    }

    /// <summary>The header's <c>__metadata__</c> gets a number value (<c>"format": 1</c>).</summary>
    public static CorruptedCheckpoint NonStringMetadata(string goodDir, string outputDir)
    {
        var shard = Prepare(goodDir, outputDir);
        if (shard.Json["__metadata__"] is JsonObject meta) meta["format"] = 1;
        else shard.Json.Insert(0, "__metadata__", new JsonObject { ["format"] = 1 });
        string text = shard.Json.ToJsonString();
        shard.Write(text, shard.Data);
        return new("non-string-metadata", outputDir, shard.Path, null, 8 + ByteIndex(text, "\"format\":1", 0) + "\"format\":".Length,
            "must be a string");
    }

    // ------------------------------------------------------------------ index

    /// <summary>The index is not JSON.</summary>
    public static CorruptedCheckpoint IndexNotJson(string goodDir, string outputDir)
    {
        string index = PrepareIndex(goodDir, outputDir);
        File.WriteAllText(index, "{\"weight_map\": {oops}}");
        return new("index-not-json", outputDir, index, null, 16, "not valid JSON");
    }

    /// <summary>The index has metadata but no weight_map.</summary>
    public static CorruptedCheckpoint IndexWithoutWeightMap(string goodDir, string outputDir)
    {
        string index = PrepareIndex(goodDir, outputDir);
        var json = JsonNode.Parse(File.ReadAllText(index))!.AsObject();
        json.Remove("weight_map");
        File.WriteAllText(index, json.ToJsonString());
        return new("index-without-weight-map", outputDir, index, null, null, "no weight_map");
    }

    /// <summary>The last shard file (by name) is deleted while the index still names it.</summary>
    public static CorruptedCheckpoint IndexMissingShard(string goodDir, string outputDir)
    {
        string index = PrepareIndex(goodDir, outputDir);
        var map = WeightMap(index);
        string shard = map.Values.Distinct().OrderBy(s => s, StringComparer.Ordinal).Last();
        File.Delete(Path.Combine(outputDir, shard));
        string firstTensor = map.First(kv => kv.Value == shard).Key;
        return new("index-missing-shard", outputDir, index, firstTensor, null, $"'{shard}', but that file does not exist");
    }

    /// <summary>The index gains an entry for a tensor no shard has.</summary>
    public static CorruptedCheckpoint IndexTensorMissingFromShard(string goodDir, string outputDir)
    {
        string index = PrepareIndex(goodDir, outputDir);
        var json = JsonNode.Parse(File.ReadAllText(index))!.AsObject();
        var map = json["weight_map"]!.AsObject();
        string shard = map.First().Value!.GetValue<string>();
        const string ghost = "model.layers.99.ghost.weight";
        map[ghost] = shard;
        File.WriteAllText(index, json.ToJsonString());
        return new("index-tensor-missing-from-shard", outputDir, index, ghost, null, $"in shard '{shard}' but it is not");
    }

    /// <summary>The index loses the entry of the last tensor (data order) of the last shard.</summary>
    public static CorruptedCheckpoint ShardTensorMissingFromIndex(string goodDir, string outputDir)
    {
        string index = PrepareIndex(goodDir, outputDir);
        var json = JsonNode.Parse(File.ReadAllText(index))!.AsObject();
        var map = json["weight_map"]!.AsObject();
        string shardName = map.Select(kv => kv.Value!.GetValue<string>()).Distinct().OrderBy(s => s, StringComparer.Ordinal).Last();
        var shard = ShardModel.Load(Path.Combine(outputDir, shardName));
        if (shard.Entries.Count < 2) throw new ArgumentException("the last shard needs at least two tensors", nameof(goodDir));
        var victim = shard.Entries[^1];
        map.Remove(victim.Name);
        File.WriteAllText(index, json.ToJsonString());
        return new("shard-tensor-missing-from-index", outputDir, shard.Path, victim.Name, shard.DataStart + victim.Begin,
            "missing from the index");
    }

    /// <summary>The first tensor of the first shard is also appended to the last shard (the index still maps it to the first).</summary>
    public static CorruptedCheckpoint TensorInTwoShards(string goodDir, string outputDir)
    {
        string index = PrepareIndex(goodDir, outputDir);
        var map = WeightMap(index);
        var shardNames = map.Values.Distinct().OrderBy(s => s, StringComparer.Ordinal).ToArray();
        if (shardNames.Length < 2) throw new ArgumentException("needs at least two shards", nameof(goodDir));
        var first = ShardModel.Load(Path.Combine(outputDir, shardNames[0]));
        var last = ShardModel.Load(Path.Combine(outputDir, shardNames[^1]));
        var copy = first.Entries[0];
        var entry = first.Json[copy.Name]!.DeepClone().AsObject();
        long begin = last.Data.Length;
        entry["data_offsets"] = new JsonArray(begin, begin + copy.End - copy.Begin);
        last.Json[copy.Name] = entry;
        var data = last.Data.Concat(first.Data.AsSpan((int)copy.Begin, (int)(copy.End - copy.Begin)).ToArray()).ToArray();
        long dataStart = last.Write(last.Json.ToJsonString(), data);
        return new("tensor-in-two-shards", outputDir, last.Path, copy.Name, dataStart + begin, "present in two shards");
    }

    // ------------------------------------------------------------------ helpers

    /// <summary>Copies a folder recursively (hidden entries included).</summary>
    public static void CopyDirectory(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var file in Directory.GetFiles(from))
            File.Copy(file, Path.Combine(to, Path.GetFileName(file)));
        foreach (var dir in Directory.GetDirectories(from))
            CopyDirectory(dir, Path.Combine(to, Path.GetFileName(dir)));
    }

    /// <summary>The first weight file of a checkpoint folder: first shard of the index by name, else model.safetensors, else the first *.safetensors.</summary>
    public static string FirstWeightFile(string dir)
    {
        string index = Path.Combine(dir, "model.safetensors.index.json");
        if (File.Exists(index))
            return Path.Combine(dir, WeightMap(index).Values.Distinct().OrderBy(s => s, StringComparer.Ordinal).First());
        string single = Path.Combine(dir, "model.safetensors");
        if (File.Exists(single)) return single;
        return Directory.GetFiles(dir, "*.safetensors").OrderBy(s => s, StringComparer.Ordinal).First();
    }

    private static ShardModel Prepare(string goodDir, string outputDir)
    {
        if (Directory.Exists(outputDir) || File.Exists(outputDir))
            throw new ArgumentException($"{outputDir} already exists", nameof(outputDir));
        CopyDirectory(goodDir, outputDir);
        var shard = ShardModel.Load(FirstWeightFile(outputDir));
        if (shard.Entries.Count < 2) throw new ArgumentException("the first weight file needs at least two tensors", nameof(goodDir));
        return shard;
    }

    private static string PrepareIndex(string goodDir, string outputDir)
    {
        if (!File.Exists(Path.Combine(goodDir, "model.safetensors.index.json")))
            throw new ArgumentException($"{goodDir} is not a sharded checkpoint (no index)", nameof(goodDir));
        if (Directory.Exists(outputDir) || File.Exists(outputDir))
            throw new ArgumentException($"{outputDir} already exists", nameof(outputDir));
        CopyDirectory(goodDir, outputDir);
        return Path.Combine(outputDir, "model.safetensors.index.json");
    }

    private static Dictionary<string, string> WeightMap(string index)
    {
        var map = new Dictionary<string, string>();
        foreach (var kv in JsonNode.Parse(File.ReadAllText(index))!["weight_map"]!.AsObject())
            map[kv.Key] = kv.Value!.GetValue<string>();
        return map;
    }

    private static int IndexOf(ReadOnlySpan<byte> haystack, string needle) => haystack.IndexOf(Encoding.UTF8.GetBytes(needle));

    /// <summary>UTF-8 byte index of <paramref name="needle"/> in <paramref name="text"/> at or after char <paramref name="from"/>.</summary>
    private static int ByteIndex(string text, string needle, int from)
    {
        int i = text.IndexOf(needle, from, StringComparison.Ordinal);
        if (i < 0) throw new InvalidOperationException($"'{needle}' not found in the header");
        return Encoding.UTF8.GetByteCount(text.AsSpan(0, i));
    }

    private static int After(string text, string tensorName) =>
        text.IndexOf($"\"{tensorName}\"", StringComparison.Ordinal) + tensorName.Length + 2;

    /// <summary>A parsed weight file: bytes, header text and JSON, data, and entries in data order.</summary>
    private sealed class ShardModel
    {
        public required string Path;
        public required byte[] Bytes;
        public required int HeaderLength;
        public required string HeaderText;
        public required JsonObject Json;
        public required byte[] Data;
        public required List<(string Name, long Begin, long End)> Entries;
        public long DataStart => 8 + HeaderLength;

        public static ShardModel Load(string path)
        {
            var bytes = File.ReadAllBytes(path);
            int n = (int)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
            string text = Encoding.UTF8.GetString(bytes, 8, n).TrimEnd(' ');
            var json = JsonNode.Parse(text)!.AsObject();
            var entries = new List<(string, long, long)>();
            foreach (var kv in json)
            {
                if (kv.Key == "__metadata__") continue;
                var off = kv.Value!["data_offsets"]!.AsArray();
                entries.Add((kv.Key, off[0]!.GetValue<long>(), off[1]!.GetValue<long>()));
            }
            entries.Sort((a, b) => a.Item2.CompareTo(b.Item2));
            return new ShardModel
            {
                Path = path, Bytes = bytes, HeaderLength = n, HeaderText = text, Json = json,
                Data = bytes.AsSpan(8 + n).ToArray(), Entries = entries,
            };
        }

        /// <summary>Writes a new header text (padded to 8) and data; returns the new data start.</summary>
        public long Write(string headerText, byte[] data)
        {
            var file = RawSafetensors.FromHeaderText(headerText, data);
            File.WriteAllBytes(Path, file);
            return (long)BinaryPrimitives.ReadUInt64LittleEndian(file) + 8;
        }
    }
}
