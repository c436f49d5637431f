using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using MoECompress.Formats.Errors;

namespace MoECompress.Compression.Model;

/// <summary>
/// Typed reads of config.json values for the engine. Every failure throws
/// <see cref="MoeCompressException"/>(<see cref="ErrorKind.InvalidConfig"/>) naming the file and the key.
/// </summary>
internal sealed class EngineConfigReader
{
    private readonly JsonObject _root;

    /// <param name="root">The object the keys are read from.</param>
    /// <param name="path">The config file (shown in error messages).</param>
    /// <param name="keyPrefix">Shown before every key in error messages ("text_config." for a nested language-model section).</param>
    public EngineConfigReader(JsonObject root, string path, string keyPrefix = "")
    {
        _root = root;
        Path = path;
        KeyPrefix = keyPrefix;
    }

    /// <summary>The config file the values come from (used in error messages).</summary>
    public string Path { get; }

    /// <summary>Prefix of the keys in error messages ("" at the top level).</summary>
    public string KeyPrefix { get; }

    public JsonObject Root => _root;

    public bool Has(string key) => _root.TryGetPropertyValue(key, out var node) && node is not null;

    public JsonNode? Node(string key) => _root.TryGetPropertyValue(key, out var node) ? node : null;

    public string? String(string key)
    {
        var node = Node(key);
        if (node is null) return null;
        if (node is JsonValue v && v.TryGetValue<string>(out var s)) return s;
        throw Invalid(key, $"expected a string, found {Describe(node)}");
    }

    public int? Int(string key) => ReadInt(Node(key), key);

    public int RequiredInt(string key) => Int(key) ?? throw Invalid(key, "is missing");

    public double? Double(string key) => ReadDouble(Node(key), key);

    public bool? Bool(string key)
    {
        var node = Node(key);
        if (node is null) return null;
        if (node is JsonValue v && v.TryGetValue<bool>(out var b)) return b;
        throw Invalid(key, $"expected true or false, found {Describe(node)}");
    }

    public MoeCompressException Invalid(string key, string problem) =>
        new(ErrorKind.InvalidConfig, $"{Path}: key '{KeyPrefix}{key}' {problem}");

    internal int? ReadInt(JsonNode? node, string key)
    {
        if (node is null) return null;
        if (node is JsonValue v)
        {
            if (v.TryGetValue<int>(out var i)) return i;
            if (v.TryGetValue<long>(out var l) && l is >= int.MinValue and <= int.MaxValue) return (int)l;
            if (v.TryGetValue<double>(out var d) && d == Math.Floor(d) && Math.Abs(d) < int.MaxValue) return (int)d;
            if (v.GetValueKind() == JsonValueKind.Number &&
                double.TryParse(v.ToJsonString(), NumberStyles.Float, CultureInfo.InvariantCulture, out var p) &&
                p == Math.Floor(p) && Math.Abs(p) < int.MaxValue)
                return (int)p;
        }
        throw Invalid(key, $"expected an integer, found {Describe(node)}");
    }

    internal double? ReadDouble(JsonNode? node, string key)
    {
        if (node is null) return null;
        if (node is JsonValue v)
        {
            if (v.TryGetValue<double>(out var d)) return d;
            if (v.GetValueKind() == JsonValueKind.Number &&
                double.TryParse(v.ToJsonString(), NumberStyles.Float, CultureInfo.InvariantCulture, out var p))
                return p;
        }
        throw Invalid(key, $"expected a number, found {Describe(node)}");
    }

    internal static string Describe(JsonNode? node) => node is null ? "null" : node.ToJsonString();
}
