using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Input;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace MoECompress.Compression.Pipeline;

/// <summary>
/// Reads a recipe file (YAML, or JSON when the name ends in .json) into a JSON tree, then binds it strictly: every key
/// known, every value of the right type and range. Errors name the file, the place (<c>steps[1] (quantize).bits</c>)
/// and what is wrong.
/// </summary>
internal sealed class RecipeReader
{
    private const long MaxBytes = 1 << 20;
    private readonly string _file;

    private RecipeReader(string file) => _file = file;

    /// <summary>The recipe file's root object.</summary>
    public static (JsonObject Root, RecipeReader Reader) Read(string path)
    {
        var full = Path.GetFullPath(path);
        var reader = new RecipeReader(full);
        if (full.EndsWith(".json", StringComparison.OrdinalIgnoreCase))
            return (StrictJson.ReadObjectFile(full, new StrictJsonOptions { Kind = ErrorKind.Usage, What = "recipe", MaxBytes = MaxBytes }), reader);
        var bytes = InputFile.ReadAllBytes(full, "recipe", ErrorKind.Usage, MaxBytes);
        if (StrictJson.FirstInvalidUtf8(bytes) is var bad && bad < bytes.Length)
            throw reader.Error("", $"invalid UTF-8 at byte {bad}");
        var stream = new YamlStream();
        try
        {
            stream.Load(new StringReader(new System.Text.UTF8Encoding(false).GetString(bytes)));
        }
        catch (YamlException e)
        {
            throw reader.Error("", $"not valid YAML at line {e.Start.Line}, column {e.Start.Column}: {StrictJson.TrimMessage(e.InnerException?.Message ?? e.Message)}");
        }
        catch (ArgumentException e) // YamlDotNet reports a repeated key this way
        {
            throw reader.Error("", $"not valid YAML: {StrictJson.TrimMessage(e.Message)}");
        }
        if (stream.Documents.Count != 1) throw reader.Error("", $"expected one YAML document, found {stream.Documents.Count}");
        var root = reader.Convert(stream.Documents[0].RootNode, "", 0) as JsonObject
            ?? throw reader.Error("", "expected a mapping (calibration, steps, evaluate) at the top level");
        return (root, reader);
    }

    private JsonNode? Convert(YamlNode node, string where, int depth)
    {
        if (depth > 32) throw Error(where, "nested too deeply");
        switch (node)
        {
            case YamlMappingNode map:
            {
                var obj = new JsonObject();
                foreach (var (k, v) in map.Children)
                {
                    if (k is not YamlScalarNode { Value: { } key }) throw Error(where, $"line {k.Start.Line}: keys must be plain names");
                    if (obj.ContainsKey(key)) throw Error(Join(where, key), $"line {k.Start.Line}: key given twice");
                    obj[key] = Convert(v, Join(where, key), depth + 1);
                }
                return obj;
            }
            case YamlSequenceNode seq:
            {
                var array = new JsonArray();
                for (var i = 0; i < seq.Children.Count; i++) array.Add(Convert(seq.Children[i], $"{where}[{i}]", depth + 1));
                return array;
            }
            case YamlScalarNode scalar:
                return Scalar(scalar);
            default:
                throw Error(where, $"line {node.Start.Line}: unsupported YAML node");
        }
    }

    private static JsonNode? Scalar(YamlScalarNode scalar)
    {
        var text = scalar.Value ?? "";
        if (scalar.Style is ScalarStyle.SingleQuoted or ScalarStyle.DoubleQuoted or ScalarStyle.Literal or ScalarStyle.Folded)
            return JsonValue.Create(text);
        switch (text)
        {
            case "" or "~" or "null" or "Null" or "NULL": return null;
            case "true" or "True" or "TRUE": return JsonValue.Create(true);
            case "false" or "False" or "FALSE": return JsonValue.Create(false);
        }
        if (long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var l)) return JsonValue.Create(l);
        if (double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) && double.IsFinite(d)) return JsonValue.Create(d);
        return JsonValue.Create(text);
    }

    private static string Join(string where, string key) => where.Length == 0 ? key : $"{where}.{key}";

    /// <summary>A usage error naming the file and the place in it.</summary>
    public MoeCompressException Error(string where, string what) =>
        new(ErrorKind.Usage, where.Length == 0 ? $"{_file}: {what}" : $"{_file}: {where}: {what}");

    /// <summary>Refuses any key of <paramref name="obj"/> not in <paramref name="known"/>.</summary>
    public void Keys(JsonObject obj, string where, params string[] known)
    {
        foreach (var (key, _) in obj)
            if (!known.Contains(key, StringComparer.Ordinal))
                throw Error(where, $"unknown key '{key}' (known: {string.Join(", ", known)})");
    }

    /// <summary>The object at <paramref name="key"/>, an empty one when absent or null.</summary>
    public JsonObject Object(JsonObject parent, string key, string where) => parent[key] switch
    {
        null => new JsonObject(),
        JsonObject o => o,
        var other => throw Error(Join(where, key), $"expected a mapping, found {Kind(other)}"),
    };

    public string? String(JsonObject obj, string key, string where)
    {
        var node = obj[key];
        if (node is null) return null;
        if (node is JsonValue v && v.GetValueKind() == JsonValueKind.String) return v.GetValue<string>();
        if (node is JsonValue n && n.GetValueKind() is JsonValueKind.Number or JsonValueKind.True or JsonValueKind.False) return n.ToJsonString();
        throw Error(Join(where, key), $"expected text, found {Kind(node)}");
    }

    public double? Number(JsonObject obj, string key, string where, double min = double.NegativeInfinity, double max = double.PositiveInfinity)
    {
        var node = obj[key];
        if (node is null) return null;
        if (node is not JsonValue v || v.GetValueKind() != JsonValueKind.Number)
            throw Error(Join(where, key), $"expected a number, found {Kind(node)}");
        var value = AsDouble(v);
        if (!(value >= min && value <= max))
            throw Error(Join(where, key), string.Create(CultureInfo.InvariantCulture, $"{value} is out of range [{min}, {max}]"));
        return value;
    }

    public int? Integer(JsonObject obj, string key, string where, int min = int.MinValue, int max = int.MaxValue)
    {
        var value = Number(obj, key, where);
        if (value is null) return null;
        if (value != Math.Floor(value.Value) || value < min || value > max)
            throw Error(Join(where, key), string.Create(CultureInfo.InvariantCulture,
                $"{value} must be a whole number{(min > int.MinValue ? $" ≥ {min}" : "")}{(max < int.MaxValue ? $" ≤ {max}" : "")}"));
        return (int)value.Value;
    }

    public bool? Bool(JsonObject obj, string key, string where)
    {
        var node = obj[key];
        if (node is null) return null;
        return node.GetValueKind() switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw Error(Join(where, key), $"expected true or false, found {Kind(node)}"),
        };
    }

    public IReadOnlyList<int>? Integers(JsonObject obj, string key, string where)
    {
        var node = obj[key];
        if (node is null) return null;
        if (node is JsonValue v && v.GetValueKind() == JsonValueKind.String)
            node = new JsonArray(v.GetValue<string>().Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
                .Select(p => (JsonNode?)(int.TryParse(p, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var i) ? JsonValue.Create(i) : JsonValue.Create(p))).ToArray());
        if (node is not JsonArray array || array.Count == 0) throw Error(Join(where, key), $"expected a list of whole numbers, found {Kind(node)}");
        var values = new List<int>();
        for (var i = 0; i < array.Count; i++)
        {
            var item = array[i];
            if (item is not JsonValue iv || iv.GetValueKind() != JsonValueKind.Number || AsDouble(iv) is var d && d != Math.Floor(d))
                throw Error($"{Join(where, key)}[{i}]", $"expected a whole number, found {Kind(item)}");
            values.Add((int)AsDouble(iv));
        }
        return values;
    }

    private static double AsDouble(JsonValue number) => double.Parse(number.ToJsonString(), NumberStyles.Float, CultureInfo.InvariantCulture);

    /// <summary>An enum value by its kebab-case name (e.g. compressed-tensors), case-insensitively.</summary>
    public T? Enum<T>(JsonObject obj, string key, string where) where T : struct, System.Enum
    {
        var text = String(obj, key, where);
        if (text is null) return null;
        foreach (var value in System.Enum.GetValues<T>())
            if (string.Equals(value.ToString(), text.Replace("_", "").Replace("-", ""), StringComparison.OrdinalIgnoreCase)) return value;
        throw Error(Join(where, key), $"'{text}' is not one of {string.Join(", ", System.Enum.GetValues<T>().Select(v => Kebab(v.ToString())))}");
    }

    private static string Kebab(string name) =>
        string.Concat(name.Select((c, i) => char.IsUpper(c) && i > 0 && char.IsLower(name[i - 1]) ? "-" + char.ToLowerInvariant(c) : char.ToLowerInvariant(c).ToString()));

    private static string Kind(JsonNode? node) => node is null ? "null" : node.GetValueKind() switch
    {
        JsonValueKind.Object => "a mapping",
        JsonValueKind.Array => "a list",
        JsonValueKind.String => $"text '{node.GetValue<string>()}'",
        JsonValueKind.Number => $"the number {node.ToJsonString()}",
        JsonValueKind.True or JsonValueKind.False => $"the boolean {node.ToJsonString()}",
        _ => "null",
    };
}
