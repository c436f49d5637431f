using System.Text.Json;
using System.Text.Json.Nodes;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Input;

namespace MoECompress.Formats.Families;

/// <summary>
/// Typed access to a config.json section with errors that name the file and the key. A reader may look into a nested
/// section (multimodal configs keep the language model under "text_config"): keys are then looked up there first and
/// reported with their dotted path.
/// </summary>
public sealed class ConfigReader
{
    /// <summary>The whole config.json.</summary>
    public JsonObject Root { get; }
    /// <summary>The section keys are read from (the root, or e.g. root["text_config"]).</summary>
    public JsonObject Section { get; }
    /// <summary>"" for the root, or "text_config." for a nested section.</summary>
    public string SectionPrefix { get; }
    public string ConfigPath { get; }

    public ConfigReader(JsonObject root, string configPath, string? nestedSection = null)
    {
        Root = root;
        ConfigPath = configPath;
        if (nestedSection is not null && root[nestedSection] is JsonObject nested)
        {
            Section = nested;
            SectionPrefix = nestedSection + ".";
        }
        else
        {
            Section = root;
            SectionPrefix = "";
        }
    }

    /// <summary>The dotted path of a key of the section ("text_config.num_experts").</summary>
    public string PathOf(string key) => SectionPrefix + key;

    public bool Has(string key) => Section[key] is not null;

    /// <summary>The first of <paramref name="keys"/> that is present with a non-null value, or null.</summary>
    public string? FirstPresent(params string[] keys) => keys.FirstOrDefault(Has);

    public MoeCompressException Error(string key, string problem) =>
        new(ErrorKind.InvalidConfig, $"{ConfigPath}: key '{PathOf(key)}' {problem}");

    public MoeCompressException Error(string problem) => new(ErrorKind.InvalidConfig, $"{ConfigPath}: {problem}");

    public int Int(string key)
    {
        var node = Section[key] ?? throw Error(key, "is missing");
        return ToInt(node, key);
    }

    public int Int(string key, int defaultValue) => Section[key] is { } node ? ToInt(node, key) : defaultValue;

    public int? OptionalInt(string key) => Section[key] is { } node ? ToInt(node, key) : null;

    public double Double(string key, double defaultValue)
    {
        if (Section[key] is not { } node) return defaultValue;
        if (node is JsonValue v && v.GetValueKind() == JsonValueKind.Number) return v.GetValue<double>();
        throw Error(key, $"must be a number, got {node.ToJsonString()}");
    }

    public bool Bool(string key, bool defaultValue)
    {
        if (Section[key] is not { } node) return defaultValue;
        if (node is JsonValue v && v.GetValueKind() is JsonValueKind.True or JsonValueKind.False) return v.GetValue<bool>();
        throw Error(key, $"must be true or false, got {node.ToJsonString()}");
    }

    /// <summary>A boolean looked up in the section first, then in the root (tie_word_embeddings sits at either level).</summary>
    public bool BoolAnyLevel(string key, bool defaultValue)
    {
        if (Section[key] is not null) return Bool(key, defaultValue);
        if (!ReferenceEquals(Section, Root) && Root[key] is not null) return new ConfigReader(Root, ConfigPath).Bool(key, defaultValue);
        return defaultValue;
    }

    public string? String(string key)
    {
        if (Section[key] is not { } node) return null;
        if (node is JsonValue v && v.GetValueKind() == JsonValueKind.String) return v.GetValue<string>();
        throw Error(key, $"must be a string, got {node.ToJsonString()}");
    }

    public IReadOnlyList<int> IntList(string key)
    {
        if (Section[key] is not { } node) return [];
        if (node is not JsonArray arr) throw Error(key, $"must be a list of integers, got {node.ToJsonString()}");
        return arr.Select(n => n is null ? throw Error(key, "must not contain null") : ToInt(n, key)).ToList();
    }

    public IReadOnlyList<string> StringList(string key)
    {
        if (Section[key] is not { } node) return [];
        if (node is not JsonArray arr) throw Error(key, $"must be a list of strings, got {node.ToJsonString()}");
        return arr.Select(n => n is JsonValue v && v.GetValueKind() == JsonValueKind.String
            ? v.GetValue<string>() : throw Error(key, "must contain only strings")).ToList();
    }

    /// <summary>An integer that must be at least <paramref name="min"/>.</summary>
    public int PositiveInt(string key, int min = 1)
    {
        int v = Int(key);
        if (v < min) throw Error(key, $"must be at least {min}, got {v}");
        return v;
    }

    private int ToInt(JsonNode node, string key)
    {
        if (node is JsonValue v && v.GetValueKind() == JsonValueKind.Number)
        {
            if (v.TryGetValue<int>(out var i)) return i;
            if (v.TryGetValue<long>(out var l) && l is >= int.MinValue and <= int.MaxValue) return (int)l;
            var d = v.GetValue<double>();
            if (d == Math.Floor(d) && d is >= int.MinValue and <= int.MaxValue) return (int)d;
        }
        throw Error(key, $"must be an integer, got {node.ToJsonString()}");
    }

    /// <summary>How config.json is read: strict (see <see cref="StrictJson"/>), trailing commas tolerated.</summary>
    public static StrictJsonOptions JsonOptions { get; } = new()
    {
        Kind = ErrorKind.InvalidConfig, AllowTrailingCommas = true, MaxDepth = 32, MaxBytes = 64 << 20, What = "config.json",
    };

    /// <summary>
    /// Reads config.json from disk: a missing file, a path that is not a regular file, or malformed JSON (invalid UTF-8,
    /// unpaired surrogate escapes, duplicate keys, numbers out of range, nesting deeper than 32) raise InvalidConfig
    /// naming the file and the JSON path.
    /// </summary>
    public static JsonObject LoadFile(string configPath)
    {
        if (InputFile.KindOf(configPath) == InputFileKind.Missing)
            throw new MoeCompressException(ErrorKind.InvalidConfig, $"{configPath}: file not found (every checkpoint needs a config.json)");
        return StrictJson.ReadObjectFile(configPath, JsonOptions);
    }

    /// <summary>Parses config.json text already in memory with the checks of <see cref="LoadFile"/>.</summary>
    public static JsonObject Parse(ReadOnlySpan<byte> utf8, string configPath) =>
        StrictJson.RequireObject(StrictJson.Parse(utf8, configPath, JsonOptions), configPath, JsonOptions);
}
