using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using System.Text.Unicode;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Input;

namespace MoECompress.Formats.Safetensors;

/// <summary>
/// The parsed header of a safetensors file: tensor entries in header order, the string-to-string
/// <c>__metadata__</c> map, and where the data section starts. <see cref="Read"/> validates strictly (the rules of
/// the reference Rust implementation plus duplicate-name detection); <see cref="Encode"/> writes headers byte-for-byte
/// the way the reference implementation serialises them (compact JSON, <c>__metadata__</c> first, tensors in
/// data order, padded with spaces to a multiple of 8 bytes).
/// </summary>
public sealed class SafetensorsHeader
{
    /// <summary>Largest header accepted (the reference implementation's limit).</summary>
    public const long MaxHeaderLength = 100_000_000;

    /// <summary>Name of the metadata entry in the header.</summary>
    public const string MetadataKey = "__metadata__";

    /// <summary>Tensor entries in the order they appear in the header.</summary>
    public IReadOnlyList<TensorInfo> Tensors { get; }

    /// <summary>The <c>__metadata__</c> entries (empty when the header has none), in header order.</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>True when the header has a <c>__metadata__</c> entry (even an empty one).</summary>
    public bool HasMetadata { get; }

    /// <summary>Length of the JSON header in bytes (the u64 stored in the first 8 bytes of the file).</summary>
    public long HeaderLength { get; }

    /// <summary>File offset of the data section: 8 + <see cref="HeaderLength"/>.</summary>
    public long DataSectionOffset => 8 + HeaderLength;

    /// <summary>Length of the data section (sum of all tensor byte lengths, which cover it exactly).</summary>
    public long DataLength { get; }

    private SafetensorsHeader(IReadOnlyList<TensorInfo> tensors, IReadOnlyDictionary<string, string> metadata,
        bool hasMetadata, long headerLength, long dataLength)
    {
        Tensors = tensors;
        Metadata = metadata;
        HasMetadata = hasMetadata;
        HeaderLength = headerLength;
        DataLength = dataLength;
    }

    /// <summary>
    /// Reads and validates the 8-byte length prefix. <paramref name="prefix"/> holds the first min(8, file length)
    /// bytes of the file. Returns the header length.
    /// </summary>
    /// <exception cref="CheckpointFormatException">The file is too short or the length is out of bounds.</exception>
    public static long ReadHeaderLength(string filePath, ReadOnlySpan<byte> prefix, long fileLength)
    {
        if (fileLength < 8)
            throw new CheckpointFormatException(filePath, null, 0,
                $"file is {fileLength} bytes, shorter than the 8-byte header-length prefix of a safetensors file");
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(prefix);
        if (n > MaxHeaderLength)
            throw new CheckpointFormatException(filePath, null, 0,
                $"header length {n} exceeds the {MaxHeaderLength}-byte limit (not a safetensors file, or corrupt)");
        if ((long)n > fileLength - 8)
            throw new CheckpointFormatException(filePath, null, 0,
                $"header length {n} extends past the end of the file ({fileLength} bytes; at most {fileLength - 8} fit)");
        return (long)n;
    }

    /// <summary>
    /// Parses and validates a header. <paramref name="json"/> is the header (bytes 8 .. 8+length of the file);
    /// <paramref name="dataLength"/> is the number of bytes after it (file length − 8 − header length).
    /// </summary>
    /// <exception cref="CheckpointFormatException">Any violation, naming the file, the tensor and the byte offset.</exception>
    public static SafetensorsHeader Read(string filePath, ReadOnlySpan<byte> json, long dataLength)
    {
        const long headerStart = 8;
        if (!Utf8.IsValid(json))
            throw new CheckpointFormatException(filePath, null, headerStart + StrictJson.FirstInvalidUtf8(json),
                "header is not valid UTF-8");

        if (json.Trim(" \t\r\n"u8).IsEmpty)
            throw new CheckpointFormatException(filePath, null, headerStart, "header is empty (expected a JSON object)");

        var tensors = new List<TensorInfo>();
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        bool hasMetadata = false;
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var reader = new Utf8JsonReader(json, new JsonReaderOptions { CommentHandling = JsonCommentHandling.Disallow, MaxDepth = 16 });
        try
        {
            if (!reader.Read())
                throw new CheckpointFormatException(filePath, null, headerStart, "header is empty (expected a JSON object)");
            if (reader.TokenType != JsonTokenType.StartObject)
                throw new CheckpointFormatException(filePath, null, headerStart + reader.TokenStartIndex,
                    $"header must be a JSON object, found {Describe(reader.TokenType)}");
            while (true)
            {
                Next(ref reader, filePath);
                if (reader.TokenType == JsonTokenType.EndObject) break;
                long keyAt = headerStart + reader.TokenStartIndex;
                string name = NameOrValue(ref reader, filePath, "$");
                if (!seen.Add(name))
                    throw new CheckpointFormatException(filePath, name == MetadataKey ? null : name, keyAt,
                        name == MetadataKey ? "duplicate __metadata__ entry in header"
                            : "duplicate tensor name in header (a JSON reader would silently keep the last one)");
                Next(ref reader, filePath);
                if (name == MetadataKey)
                {
                    hasMetadata = true;
                    ReadMetadata(ref reader, filePath, metadata);
                }
                else
                {
                    tensors.Add(ReadEntry(ref reader, filePath, name, keyAt));
                }
            }
            // Anything but whitespace after the object is an error (the reader enforces this when it reaches the end).
            if (reader.Read())
                throw new CheckpointFormatException(filePath, null, headerStart + reader.TokenStartIndex,
                    "unexpected content after the header's JSON object");
        }
        catch (JsonException e)
        {
            throw new CheckpointFormatException(filePath, null, headerStart + StrictJson.ErrorOffset(json, e),
                $"header is not valid JSON ({StrictJson.TrimMessage(e.Message)})");
        }

        long headerLength = json.Length;
        ValidateLayout(filePath, tensors, headerStart + headerLength, dataLength);
        return new SafetensorsHeader(tensors, metadata, hasMetadata, headerLength, dataLength);
    }

    private static void Next(ref Utf8JsonReader reader, string filePath)
    {
        if (!reader.Read())
            throw new CheckpointFormatException(filePath, null, 8 + reader.BytesConsumed,
                "header is not valid JSON (it ends before the object is closed)");
    }

    private static void ReadMetadata(ref Utf8JsonReader reader, string filePath, Dictionary<string, string> metadata)
    {
        const long headerStart = 8;
        if (reader.TokenType == JsonTokenType.Null) return; // "__metadata__": null is accepted as "no metadata"
        if (reader.TokenType != JsonTokenType.StartObject)
            throw new CheckpointFormatException(filePath, null, headerStart + reader.TokenStartIndex,
                $"__metadata__ must be an object of strings, found {Describe(reader.TokenType)}");
        while (true)
        {
            Next(ref reader, filePath);
            if (reader.TokenType == JsonTokenType.EndObject) return;
            long keyAt = headerStart + reader.TokenStartIndex;
            string key = NameOrValue(ref reader, filePath, "$.__metadata__");
            Next(ref reader, filePath);
            if (reader.TokenType != JsonTokenType.String)
                throw new CheckpointFormatException(filePath, null, headerStart + reader.TokenStartIndex,
                    $"__metadata__ value of '{key}' must be a string, found {Describe(reader.TokenType)}");
            if (!metadata.TryAdd(key, NameOrValue(ref reader, filePath, "$.__metadata__")))
                throw new CheckpointFormatException(filePath, null, keyAt, $"duplicate __metadata__ key '{key}'");
        }
    }

    private static TensorInfo ReadEntry(ref Utf8JsonReader reader, string filePath, string name, long keyAt)
    {
        const long headerStart = 8;
        if (reader.TokenType != JsonTokenType.StartObject)
            throw new CheckpointFormatException(filePath, name, headerStart + reader.TokenStartIndex,
                $"header entry must be an object with dtype, shape and data_offsets, found {Describe(reader.TokenType)}");
        SafetensorsDType? dtype = null;
        long[]? shape = null, offsets = null;
        while (true)
        {
            Next(ref reader, filePath);
            if (reader.TokenType == JsonTokenType.EndObject) break;
            long fieldAt = headerStart + reader.TokenStartIndex;
            string field = NameOrValue(ref reader, filePath, "$");
            bool isDType = field == "dtype", isShape = field == "shape", isOffsets = field == "data_offsets";
            Next(ref reader, filePath);
            if ((isDType && dtype is not null) || (isShape && shape is not null) || (isOffsets && offsets is not null))
                throw new CheckpointFormatException(filePath, name, fieldAt, $"duplicate field '{field}'");
            if (isDType)
            {
                if (reader.TokenType != JsonTokenType.String)
                    throw new CheckpointFormatException(filePath, name, headerStart + reader.TokenStartIndex,
                        $"dtype must be a string, found {Describe(reader.TokenType)}");
                string s = NameOrValue(ref reader, filePath, "$");
                if (!SafetensorsDTypes.TryParse(s, out var d))
                    throw new CheckpointFormatException(filePath, name, headerStart + reader.TokenStartIndex,
                        $"unknown dtype '{s}' (expected one of {string.Join(", ", SafetensorsDTypes.AllHeaderNames)})");
                dtype = d;
            }
            else if (isShape) shape = ReadIntegerArray(ref reader, filePath, name, "shape");
            else if (isOffsets) offsets = ReadIntegerArray(ref reader, filePath, name, "data_offsets");
            else reader.Skip(); // unknown fields are ignored, as the reference implementation does
        }
        if (dtype is null) throw new CheckpointFormatException(filePath, name, keyAt, "entry has no dtype");
        if (shape is null) throw new CheckpointFormatException(filePath, name, keyAt, "entry has no shape");
        if (offsets is null) throw new CheckpointFormatException(filePath, name, keyAt, "entry has no data_offsets");
        if (offsets.Length != 2)
            throw new CheckpointFormatException(filePath, name, keyAt,
                $"data_offsets must be [begin, end], found {offsets.Length} numbers");
        return new TensorInfo(name, dtype.Value, shape, offsets[0], offsets[1]);
    }

    private static long[] ReadIntegerArray(ref Utf8JsonReader reader, string filePath, string name, string field)
    {
        const long headerStart = 8;
        if (reader.TokenType != JsonTokenType.StartArray)
            throw new CheckpointFormatException(filePath, name, headerStart + reader.TokenStartIndex,
                $"{field} must be an array of non-negative integers, found {Describe(reader.TokenType)}");
        var values = new List<long>(4);
        while (true)
        {
            Next(ref reader, filePath);
            if (reader.TokenType == JsonTokenType.EndArray) break;
            long at = headerStart + reader.TokenStartIndex;
            if (reader.TokenType != JsonTokenType.Number)
                throw new CheckpointFormatException(filePath, name, at,
                    $"{field} must hold non-negative integers, found {Describe(reader.TokenType)}");
            if (!reader.TryGetInt64(out long v))
                throw new CheckpointFormatException(filePath, name, at,
                    $"{field} holds '{Encoding.UTF8.GetString(reader.ValueSpan)}', not a non-negative integer");
            if (v < 0)
                throw new CheckpointFormatException(filePath, name, at, $"{field} holds negative value {v}");
            values.Add(v);
        }
        return values.ToArray();
    }

    /// <summary>Per-tensor size/offset checks, then contiguity: sorted by offset the entries tile [0, dataLength).</summary>
    private static void ValidateLayout(string filePath, List<TensorInfo> tensors, long dataStart, long dataLength)
    {
        foreach (var t in tensors)
        {
            long expected;
            try { expected = t.DType.ByteCount(t.Shape); }
            catch (OverflowException)
            {
                throw new CheckpointFormatException(filePath, t.Name, null,
                    $"shape [{string.Join(", ", t.Shape)}] × {t.DType.ItemSize()} bytes overflows a 64-bit size");
            }
            if (t.DataBegin > t.DataEnd)
                throw new CheckpointFormatException(filePath, t.Name, SafeAdd(dataStart, t.DataBegin),
                    $"data_offsets [{t.DataBegin}, {t.DataEnd}] end before they begin");
            if (t.DataEnd - t.DataBegin != expected)
                throw new CheckpointFormatException(filePath, t.Name, SafeAdd(dataStart, t.DataBegin),
                    $"data_offsets [{t.DataBegin}, {t.DataEnd}] span {t.DataEnd - t.DataBegin} bytes but " +
                    $"{t.DType.ToHeaderName()} shape [{string.Join(", ", t.Shape)}] needs {expected}");
            if (t.DataEnd > dataLength)
                throw new CheckpointFormatException(filePath, t.Name, SafeAdd(dataStart, t.DataBegin),
                    $"data_offsets [{t.DataBegin}, {t.DataEnd}] extend past the end of the data section " +
                    $"({dataLength} bytes; the file is truncated or the offsets are wrong)");
        }

        var sorted = tensors.ToArray();
        Array.Sort(sorted, static (a, b) =>
        {
            int c = a.DataBegin.CompareTo(b.DataBegin);
            return c != 0 ? c : a.DataEnd.CompareTo(b.DataEnd);
        });
        long expectedBegin = 0;
        TensorInfo? previous = null;
        foreach (var t in sorted)
        {
            if (t.DataBegin < expectedBegin)
                throw new CheckpointFormatException(filePath, t.Name, dataStart + t.DataBegin,
                    $"data_offsets [{t.DataBegin}, {t.DataEnd}] overlap tensor '{previous!.Name}' " +
                    $"[{previous.DataBegin}, {previous.DataEnd}]");
            if (t.DataBegin > expectedBegin)
                throw new CheckpointFormatException(filePath, t.Name, dataStart + expectedBegin,
                    $"gap of {t.DataBegin - expectedBegin} unused bytes before this tensor's data_offsets " +
                    $"[{t.DataBegin}, {t.DataEnd}] (entries must be contiguous)");
            expectedBegin = t.DataEnd;
            previous = t;
        }
        if (expectedBegin != dataLength)
            throw new CheckpointFormatException(filePath, previous?.Name, dataStart + expectedBegin,
                $"{dataLength - expectedBegin} trailing bytes after the last tensor's data (the data section is " +
                $"{dataLength} bytes, tensors cover {expectedBegin})");
    }

    private static long SafeAdd(long a, long b) => b > long.MaxValue - a ? long.MaxValue : a + b;

    /// <summary>
    /// Builds a complete header block: the 8-byte little-endian length followed by the JSON, padded with spaces so that
    /// the data section starts at a multiple of 8. Tensors are listed in the order given, which must be data order
    /// (offsets are taken from the <see cref="TensorInfo"/> values). The <c>__metadata__</c> entry is written first,
    /// and only when <paramref name="metadata"/> is non-empty. The JSON is compact and strings are escaped the way
    /// serde_json does (only <c>"</c>, <c>\</c> and control characters), so files match the reference writer's bytes.
    /// </summary>
    public static byte[] Encode(IReadOnlyList<TensorInfo> tensors, IReadOnlyDictionary<string, string>? metadata)
    {
        var sb = new StringBuilder(64 + tensors.Count * 96);
        sb.Append('{');
        bool first = true;
        if (metadata is { Count: > 0 })
        {
            sb.Append("\"__metadata__\":{");
            bool firstKey = true;
            foreach (var kv in metadata)
            {
                if (!firstKey) sb.Append(',');
                firstKey = false;
                AppendJsonString(sb, kv.Key);
                sb.Append(':');
                AppendJsonString(sb, kv.Value);
            }
            sb.Append('}');
            first = false;
        }
        foreach (var t in tensors)
        {
            if (!first) sb.Append(',');
            first = false;
            AppendJsonString(sb, t.Name);
            sb.Append(":{\"dtype\":\"").Append(t.DType.ToHeaderName()).Append("\",\"shape\":[");
            for (int i = 0; i < t.Shape.Length; i++)
            {
                if (i > 0) sb.Append(',');
                sb.Append(t.Shape[i]);
            }
            sb.Append("],\"data_offsets\":[").Append(t.DataBegin).Append(',').Append(t.DataEnd).Append("]}");
        }
        sb.Append('}');

        int jsonBytes = Encoding.UTF8.GetByteCount(sb.ToString());
        int padded = (jsonBytes + 7) / 8 * 8;
        var block = new byte[8 + padded];
        BinaryPrimitives.WriteUInt64LittleEndian(block, (ulong)padded);
        Encoding.UTF8.GetBytes(sb.ToString(), block.AsSpan(8));
        block.AsSpan(8 + jsonBytes).Fill((byte)' ');
        return block;
    }

    private static void AppendJsonString(StringBuilder sb, string s)
    {
        sb.Append('"');
        foreach (char c in s)
        {
            switch (c)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\b': sb.Append("\\b"); break;
                case '\f': sb.Append("\\f"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                default:
                    if (c < 0x20) sb.Append("\\u00").Append(((int)c).ToString("x2"));
                    else sb.Append(c);
                    break;
            }
        }
        sb.Append('"');
    }

    /// <summary>A key or string value; an unpaired surrogate escape in it is a format error of this file.</summary>
    private static string NameOrValue(ref Utf8JsonReader reader, string filePath, string jsonPath)
    {
        try
        {
            return StrictJson.GetString(ref reader, filePath, jsonPath, 8, ErrorKind.InvalidCheckpoint);
        }
        catch (JsonFormatException e)
        {
            throw new CheckpointFormatException(filePath, null, e.Offset, $"header {e.JsonPath}: {e.Problem}");
        }
    }

    internal static string Describe(JsonTokenType t) => t switch
    {
        JsonTokenType.StartObject => "an object",
        JsonTokenType.StartArray => "an array",
        JsonTokenType.String => "a string",
        JsonTokenType.Number => "a number",
        JsonTokenType.True or JsonTokenType.False => "a boolean",
        JsonTokenType.Null => "null",
        _ => t.ToString(),
    };
}
