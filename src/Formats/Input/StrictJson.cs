using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Unicode;
using MoECompress.Formats.Errors;

namespace MoECompress.Formats.Input;

/// <summary>
/// Strict reading of JSON files (config.json, index files, tokenizer files, manifests, profiles, recipes). Before a
/// document is built, the text is checked in one pass: valid UTF-8, no unpaired UTF-16 surrogate escapes
/// (<c>"\udc00"</c>), no key repeated in an object (refused, as the safetensors format does — a JSON library would
/// silently keep one of the two), every number a finite double, nesting at most
/// <see cref="StrictJsonOptions.MaxDepth"/>, one value and nothing after it. Files are read through
/// <see cref="InputFile"/> (regular files only, checked before opening; bounded size; stable length). Every failure is
/// a <see cref="JsonFormatException"/> naming the file, the JSON path, the byte offset and what is wrong. Documents
/// that pass never make System.Text.Json throw when read (no lazy duplicate-key or transcoding errors).
/// </summary>
public static class StrictJson
{
    private static ReadOnlySpan<byte> Utf8Bom => [0xEF, 0xBB, 0xBF];

    /// <summary>Reads and checks a file; returns its root (which may be any JSON value except null).</summary>
    public static JsonNode ReadFile(string path, StrictJsonOptions options) =>
        Parse(InputFile.ReadAllBytes(path, options.What, options.Kind, options.MaxBytes), path, options);

    /// <summary>Reads and checks a file whose root must be an object.</summary>
    public static JsonObject ReadObjectFile(string path, StrictJsonOptions options) =>
        RequireObject(ReadFile(path, options), path, options);

    /// <summary>Reads and checks a file into a <see cref="JsonDocument"/> (cheaper than nodes for large read-only files). Dispose it.</summary>
    public static JsonDocument ReadDocumentFile(string path, StrictJsonOptions options) =>
        ParseDocument(InputFile.ReadAllBytes(path, options.What, options.Kind, options.MaxBytes), path, options);

    /// <summary>Checks <paramref name="utf8"/> (see the class remarks) and builds its node tree.</summary>
    public static JsonNode Parse(ReadOnlySpan<byte> utf8, string path, StrictJsonOptions options)
    {
        int start = Validate(utf8, path, options);
        return JsonNode.Parse(utf8[start..], documentOptions: DocumentOptions(options))
               ?? throw new JsonFormatException(options.Kind, path, "$", start, "the document is null (expected a JSON value)");
    }

    /// <summary>Checks <paramref name="utf8"/> and builds a <see cref="JsonDocument"/> over it (the memory must stay unchanged while it is used).</summary>
    public static JsonDocument ParseDocument(ReadOnlyMemory<byte> utf8, string path, StrictJsonOptions options)
    {
        int start = Validate(utf8.Span, path, options);
        return JsonDocument.Parse(utf8[start..], DocumentOptions(options));
    }

    /// <summary>The root as an object, or an error naming what was found instead.</summary>
    public static JsonObject RequireObject(JsonNode root, string path, StrictJsonOptions options) =>
        root as JsonObject ?? throw new JsonFormatException(options.Kind, path, "$", 0,
            $"expected a JSON object at the top level, found {Describe(root.GetValueKind())}");

    /// <summary>
    /// Checks the text without building anything; returns where the JSON starts (3 after a UTF-8 byte-order mark, else 0).
    /// </summary>
    /// <exception cref="JsonFormatException">The first problem found.</exception>
    public static int Validate(ReadOnlySpan<byte> utf8, string path, StrictJsonOptions options)
    {
        int start = utf8.StartsWith(Utf8Bom) ? Utf8Bom.Length : 0;
        var json = utf8[start..];
        if (!Utf8.IsValid(json))
        {
            int bad = FirstInvalidUtf8(json);
            throw new JsonFormatException(options.Kind, path, "$", start + bad,
                $"the text is not valid UTF-8 (byte 0x{json[bad]:X2} cannot appear there)");
        }
        if (json.Trim(" \t\r\n"u8).IsEmpty)
            throw new JsonFormatException(options.Kind, path, "$", start, "the file is empty (expected a JSON value)");

        var frames = new List<Frame>();
        var reader = new Utf8JsonReader(json, new JsonReaderOptions
        {
            MaxDepth = options.MaxDepth,
            AllowTrailingCommas = options.AllowTrailingCommas,
            CommentHandling = options.AllowComments ? JsonCommentHandling.Skip : JsonCommentHandling.Disallow,
        });
        try
        {
            while (reader.Read())
            {
                switch (reader.TokenType)
                {
                    case JsonTokenType.StartObject:
                    case JsonTokenType.StartArray:
                        EnterValue(frames);
                        frames.Add(new Frame(reader.TokenType == JsonTokenType.StartObject));
                        break;
                    case JsonTokenType.EndObject:
                    case JsonTokenType.EndArray:
                        frames.RemoveAt(frames.Count - 1);
                        break;
                    case JsonTokenType.PropertyName:
                    {
                        var frame = frames[^1];
                        frame.Key = null;
                        string key = GetString(ref reader, path, PathOf(frames), start, options.Kind);
                        frame.Key = key;
                        if (!frame.Keys!.TryAdd(key, reader.TokenStartIndex))
                            throw new JsonFormatException(options.Kind, path, PathOf(frames), start + reader.TokenStartIndex,
                                $"duplicate key '{key}' (first at byte {start + frame.Keys[key]}); a JSON reader would " +
                                "silently keep only one of them");
                        break;
                    }
                    case JsonTokenType.String:
                        EnterValue(frames);
                        GetString(ref reader, path, PathOf(frames), start, options.Kind);
                        break;
                    case JsonTokenType.Number:
                        EnterValue(frames);
                        if (!reader.TryGetDouble(out double d) || !double.IsFinite(d))
                            throw new JsonFormatException(options.Kind, path, PathOf(frames), start + reader.TokenStartIndex,
                                $"number {Encoding.UTF8.GetString(reader.ValueSpan)} is out of range (beyond ±1.8e308)");
                        break;
                    default:
                        EnterValue(frames);
                        break;
                }
            }
        }
        catch (JsonException e)
        {
            string problem = e.Message.Contains("depth", StringComparison.OrdinalIgnoreCase)
                ? $"nested deeper than the {options.MaxDepth} levels accepted"
                : TrimMessage(e.Message);
            throw new JsonFormatException(options.Kind, path, PathOf(frames), start + ErrorOffset(json, e), problem);
        }
        return start;
    }

    /// <summary>
    /// The string of the reader's current String or PropertyName token; an unpaired surrogate escape becomes a
    /// <see cref="JsonFormatException"/> (System.Text.Json throws InvalidOperationException for it). For readers that
    /// stream a format of their own (the safetensors header); <paramref name="baseOffset"/> is added to offsets.
    /// </summary>
    public static string GetString(ref Utf8JsonReader reader, string path, string jsonPath, long baseOffset, ErrorKind kind)
    {
        try
        {
            return reader.GetString()!;
        }
        catch (InvalidOperationException)
        {
            var raw = reader.HasValueSequence ? System.Buffers.BuffersExtensions.ToArray(reader.ValueSequence) : reader.ValueSpan.ToArray();
            string escape = LoneSurrogateEscape(raw) ?? "\\u....";
            throw new JsonFormatException(kind, path, jsonPath, baseOffset + reader.TokenStartIndex,
                $"string holds the escape {escape}, an unpaired UTF-16 surrogate (not a Unicode character)");
        }
    }

    /// <summary>Byte offset inside <paramref name="json"/> that a reader exception points at.</summary>
    public static long ErrorOffset(ReadOnlySpan<byte> json, JsonException e)
    {
        long line = e.LineNumber ?? 0, column = e.BytePositionInLine ?? 0;
        long at = 0;
        for (long l = 0; l < line && at < json.Length; l++)
        {
            int nl = json[(int)at..].IndexOf((byte)'\n');
            if (nl < 0) break;
            at += nl + 1;
        }
        return Math.Min(at + column, json.Length);
    }

    /// <summary>A reader exception's message without its position suffix, on one line.</summary>
    public static string TrimMessage(string message)
    {
        int cut = message.IndexOf(" LineNumber:", StringComparison.Ordinal);
        if (cut > 0) message = message[..cut];
        return message.Replace('\n', ' ').Replace('\r', ' ').TrimEnd('.', ' ');
    }

    /// <summary>Offset of the first byte that does not start a valid UTF-8 sequence (the length when all are valid).</summary>
    public static int FirstInvalidUtf8(ReadOnlySpan<byte> bytes)
    {
        int i = 0;
        while (i < bytes.Length)
        {
            if (Rune.DecodeFromUtf8(bytes[i..], out _, out int consumed) != System.Buffers.OperationStatus.Done)
                return i;
            i += consumed;
        }
        return i;
    }

    /// <summary>"an object", "a string", ... for messages.</summary>
    public static string Describe(JsonValueKind kind) => kind switch
    {
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        JsonValueKind.Null => "null",
        _ => kind.ToString(),
    };

    private static JsonDocumentOptions DocumentOptions(StrictJsonOptions o) => new()
    {
        MaxDepth = o.MaxDepth,
        AllowTrailingCommas = o.AllowTrailingCommas,
        CommentHandling = o.AllowComments ? JsonCommentHandling.Skip : JsonCommentHandling.Disallow,
    };

    /// <summary>A value starts: inside an array it is the next item.</summary>
    private static void EnterValue(List<Frame> frames)
    {
        if (frames.Count > 0 && !frames[^1].IsObject) frames[^1].Index++;
    }

    private static string PathOf(List<Frame> frames)
    {
        var sb = new StringBuilder("$");
        foreach (var f in frames)
        {
            if (f.IsObject)
            {
                if (f.Key is null) continue;
                if (IsPlainName(f.Key)) sb.Append('.').Append(f.Key);
                else sb.Append("['").Append(f.Key.Replace("\\", "\\\\").Replace("'", "\\'")).Append("']");
            }
            else if (f.Index >= 0) sb.Append('[').Append(f.Index).Append(']');
        }
        return sb.ToString();
    }

    private static bool IsPlainName(string key)
    {
        if (key.Length == 0 || char.IsAsciiDigit(key[0])) return false;
        foreach (char c in key)
            if (!char.IsAsciiLetterOrDigit(c) && c != '_') return false;
        return true;
    }

    /// <summary>The first <c>\uXXXX</c> escape of a raw (still escaped) string that is an unpaired surrogate, or null.</summary>
    internal static string? LoneSurrogateEscape(ReadOnlySpan<byte> raw)
    {
        string? pendingHigh = null;
        int i = 0;
        while (i < raw.Length)
        {
            if (raw[i] == '\\' && i + 1 < raw.Length)
            {
                if (raw[i + 1] == 'u' && i + 6 <= raw.Length &&
                    int.TryParse(raw.Slice(i + 2, 4), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out int unit))
                {
                    string text = "\\u" + Encoding.ASCII.GetString(raw.Slice(i + 2, 4));
                    bool high = unit is >= 0xD800 and <= 0xDBFF, low = unit is >= 0xDC00 and <= 0xDFFF;
                    if (pendingHigh is not null)
                    {
                        if (!low) return pendingHigh;
                        pendingHigh = null;
                    }
                    else if (low) return text;
                    else if (high) pendingHigh = text;
                    i += 6;
                    continue;
                }
                if (pendingHigh is not null) return pendingHigh;
                i += 2;
                continue;
            }
            if (pendingHigh is not null) return pendingHigh;
            i++;
        }
        return pendingHigh;
    }

    private sealed class Frame(bool isObject)
    {
        public bool IsObject { get; } = isObject;
        public Dictionary<string, long>? Keys { get; } = isObject ? new(StringComparer.Ordinal) : null;
        public string? Key { get; set; }
        public int Index { get; set; } = -1;
    }
}
