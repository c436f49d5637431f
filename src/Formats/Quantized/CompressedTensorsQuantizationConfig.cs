using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using MoECompress.Formats.Errors;

namespace MoECompress.Formats.Quantized;

/// <summary>
/// A <c>quantization_config</c> with <c>quant_method: "compressed-tensors"</c> and <c>format: "pack-quantized"</c>:
/// <c>config_groups</c> (each with <c>targets</c> and integer weight-only <c>weights</c> arguments: <c>num_bits</c>,
/// <c>symmetric</c>, <c>strategy</c> "group" or "channel", <c>group_size</c>, <c>actorder</c>) and <c>ignore</c>.
/// A target or ignore entry is an exact module name, <c>"re:&lt;regex&gt;"</c> (Python <c>re.match</c>), or a module class
/// name (<c>"Linear"</c>, which every packed module is).
/// </summary>
public sealed class CompressedTensorsQuantizationConfig
{
    public const string Method = "compressed-tensors";
    public const string PackQuantized = "pack-quantized";

    private sealed record Target(string Text, Regex? Pattern)
    {
        public bool Matches(string module) =>
            Pattern is not null ? Pattern.IsMatch(module) : Text == module || Text == "Linear";
    }

    private sealed record Group(string Name, IReadOnlyList<Target> Targets, PackedScheme Scheme);

    private readonly IReadOnlyList<Group> _groups;
    private readonly IReadOnlyList<Target> _ignore;

    private CompressedTensorsQuantizationConfig(IReadOnlyList<Group> groups, IReadOnlyList<Target> ignore)
    {
        _groups = groups;
        _ignore = ignore;
    }

    /// <summary>The config group names, in order.</summary>
    public IReadOnlyList<string> GroupNames => _groups.Select(g => g.Name).ToList();

    /// <summary>Parses <paramref name="quantizationConfig"/>; errors name config.json and the key.</summary>
    /// <exception cref="MoeCompressException">InvalidConfig: another format than pack-quantized (float, nvfp4, naive int,
    /// marlin-24, sparse), activation quantization, a non-integer type, an unsupported strategy, or malformed fields.</exception>
    public static CompressedTensorsQuantizationConfig Read(JsonObject quantizationConfig, string configPath)
    {
        string format = quantizationConfig["format"] is JsonValue fv && fv.GetValueKind() == JsonValueKind.String ? fv.GetValue<string>() : "(none)";
        if (format != PackQuantized)
            throw Error(configPath, "format", $"is '{format}'; only compressed-tensors '{PackQuantized}' (integer weight-only) checkpoints can be read");
        if (quantizationConfig["config_groups"] is not JsonObject groupsNode || groupsNode.Count == 0)
            throw Error(configPath, "config_groups", "is missing or empty");
        var groups = new List<Group>();
        foreach (var (name, node) in groupsNode)
        {
            string at = $"config_groups.{name}";
            if (node is not JsonObject g) throw Error(configPath, at, "must be an object");
            if (g["input_activations"] is JsonObject || g["output_activations"] is JsonObject)
                throw Error(configPath, at, "quantizes activations; only weight-only schemes can be read");
            if (g["weights"] is not JsonObject w) throw Error(configPath, at + ".weights", "is missing");
            var targets = Targets(g["targets"], configPath, at + ".targets");
            groups.Add(new Group(name, targets, Scheme(w, configPath, at + ".weights")));
        }
        var ignore = quantizationConfig["ignore"] is null ? [] : Targets(quantizationConfig["ignore"], configPath, "ignore");
        return new CompressedTensorsQuantizationConfig(groups, ignore);
    }

    /// <summary>The scheme of module <paramref name="module"/>, or null when it is ignored or no group targets it.</summary>
    public PackedScheme? SchemeFor(string module)
    {
        if (_ignore.Any(t => t.Matches(module))) return null;
        // A group naming the module exactly wins over patterns and class names (as compressed-tensors resolves them).
        foreach (var g in _groups)
            if (g.Targets.Any(t => t.Pattern is null && t.Text == module)) return g.Scheme;
        foreach (var g in _groups)
            if (g.Targets.Any(t => t.Pattern is not null && t.Pattern.IsMatch(module))) return g.Scheme;
        foreach (var g in _groups)
            if (g.Targets.Any(t => t.Pattern is null && t.Text == "Linear")) return g.Scheme;
        return null;
    }

    /// <summary>
    /// Builds the <c>quantization_config</c> of a pack-quantized checkpoint: one config group per distinct scheme (the
    /// most common first); with a single scheme its targets are <c>["Linear"]</c> (as llm-compressor writes it) and
    /// every unquantized Linear module is listed in <c>ignore</c>; with several, each group lists its modules by name.
    /// </summary>
    /// <exception cref="ArgumentException">No quantized module, or a module listed both ways.</exception>
    /// <exception cref="MoeCompressException">Usage: a width the layout cannot store.</exception>
    public static JsonObject Build(IReadOnlyDictionary<string, PackedScheme> quantized, IEnumerable<string> unquantized, bool actOrder)
    {
        var schemes = GptqQuantizationConfig.GroupBySchemes(quantized, unquantized, out var skipped);
        foreach (var (scheme, modules) in schemes) CompressedTensorsLayout.Check(modules[0], scheme.Bits);
        var groups = new JsonObject();
        for (int i = 0; i < schemes.Count; i++)
        {
            var (scheme, modules) = schemes[i];
            var targets = schemes.Count == 1 ? new JsonArray("Linear") : new JsonArray(modules.Select(m => (JsonNode)m).ToArray());
            groups[$"group_{i}"] = new JsonObject
            {
                ["targets"] = targets,
                ["weights"] = new JsonObject
                {
                    ["num_bits"] = scheme.Bits,
                    ["type"] = "int",
                    ["symmetric"] = scheme.Symmetric,
                    ["strategy"] = scheme.GroupSize <= 0 ? "channel" : "group",
                    ["group_size"] = scheme.GroupSize <= 0 ? null : (JsonNode)scheme.GroupSize,
                    ["block_structure"] = null,
                    ["dynamic"] = false,
                    ["actorder"] = actOrder ? (JsonNode)"group" : null,
                    ["observer"] = "minmax",
                    ["observer_kwargs"] = new JsonObject(),
                },
                ["input_activations"] = null,
                ["output_activations"] = null,
            };
        }
        return new JsonObject
        {
            ["quant_method"] = Method,
            ["format"] = PackQuantized,
            ["quantization_status"] = "compressed",
            ["config_groups"] = groups,
            ["ignore"] = new JsonArray(skipped.Select(m => (JsonNode)m).ToArray()),
            ["kv_cache_scheme"] = null,
            ["global_compression_ratio"] = null,
        };
    }

    private static IReadOnlyList<Target> Targets(JsonNode? node, string configPath, string at)
    {
        if (node is not JsonArray arr) throw Error(configPath, at, "must be a list of module names or patterns");
        var result = new List<Target>();
        foreach (var item in arr)
        {
            if (item is not JsonValue v || v.GetValueKind() != JsonValueKind.String) throw Error(configPath, at, "must contain only strings");
            string text = v.GetValue<string>();
            Regex? pattern = null;
            if (text.StartsWith("re:", StringComparison.Ordinal))
            {
                try { pattern = ModuleNamePatterns.FromPython(text[3..]); }
                catch (ArgumentException e) { throw Error(configPath, at, $"entry '{text}' is not a valid regular expression: {e.Message}"); }
            }
            result.Add(new Target(text, pattern));
        }
        return result;
    }

    private static PackedScheme Scheme(JsonObject w, string configPath, string at)
    {
        string type = w["type"] is JsonValue tv && tv.GetValueKind() == JsonValueKind.String ? tv.GetValue<string>() : "int";
        if (type != "int") throw Error(configPath, at + ".type", $"is '{type}'; only integer weights can be read");
        int bits = w["num_bits"] is JsonValue bv && bv.TryGetValue<int>(out var b) ? b : throw Error(configPath, at + ".num_bits", "is missing or not an integer");
        if (!PackedScheme.PackableBits.Contains(bits)) throw Error(configPath, at + ".num_bits", $"is {bits}; 2, 3, 4 or 8 bits can be read");
        bool sym = w["symmetric"] is not JsonValue sv || sv.GetValueKind() != JsonValueKind.False;
        string strategy = w["strategy"] is JsonValue st && st.GetValueKind() == JsonValueKind.String ? st.GetValue<string>() : "tensor";
        int groupSize;
        switch (strategy)
        {
            case "group":
                groupSize = w["group_size"] is JsonValue gv && gv.TryGetValue<int>(out var g) && g > 0 ? g
                    : throw Error(configPath, at + ".group_size", "must be a positive integer for strategy 'group'");
                break;
            case "channel":
                groupSize = -1;
                break;
            default:
                throw Error(configPath, at + ".strategy", $"is '{strategy}'; only 'group' and 'channel' can be read");
        }
        return new PackedScheme(bits, groupSize, sym);
    }

    private static MoeCompressException Error(string configPath, string key, string problem) =>
        new(ErrorKind.InvalidConfig, $"{configPath}: key 'quantization_config.{key}' {problem}");
}
