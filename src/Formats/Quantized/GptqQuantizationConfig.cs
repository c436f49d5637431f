using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Families;

namespace MoECompress.Formats.Quantized;

/// <summary>
/// A <c>quantization_config</c> with <c>quant_method: "gptq"</c>: the base scheme (<c>bits</c>, <c>group_size</c>,
/// <c>sym</c>), <c>desc_act</c>, <c>checkpoint_format</c> (<c>gptq</c> = v1, zero points stored minus one;
/// <c>gptq_v2</c> = stored as is), and GPTQModel's <c>dynamic</c> per-module rules: keys are Python regular expressions
/// matched with <c>re.match</c> against the module name, in order; <c>"-:&lt;regex&gt;"</c> leaves the matched modules
/// unquantized, <c>"+:&lt;regex&gt;"</c> (or no prefix) overrides the base fields with the rule's values; the first matching
/// rule decides (as vLLM's <c>get_dynamic_override</c> does).
/// </summary>
public sealed class GptqQuantizationConfig
{
    public const string Method = "gptq";

    private sealed record Rule(string Key, Regex Pattern, bool Negative, JsonObject Overrides);

    private readonly IReadOnlyList<Rule> _rules;

    private GptqQuantizationConfig(PackedScheme baseScheme, bool descAct, string checkpointFormat, IReadOnlyList<Rule> rules)
    {
        BaseScheme = baseScheme;
        DescAct = descAct;
        CheckpointFormat = checkpointFormat;
        _rules = rules;
    }

    /// <summary>bits / group_size / sym of modules no dynamic rule overrides.</summary>
    public PackedScheme BaseScheme { get; }
    /// <summary>desc_act (act-order; the columns' groups are then given by g_idx).</summary>
    public bool DescAct { get; }
    /// <summary>"gptq" (v1) or "gptq_v2".</summary>
    public string CheckpointFormat { get; }
    /// <summary>True for v1 checkpoints, whose qzeros hold z − 1.</summary>
    public bool StoresZeroMinusOne => CheckpointFormat != "gptq_v2";
    /// <summary>The dynamic rule keys, in order.</summary>
    public IReadOnlyList<string> DynamicKeys => _rules.Select(r => r.Key).ToList();

    /// <summary>Parses <paramref name="quantizationConfig"/>; errors name config.json and the key.</summary>
    /// <exception cref="MoeCompressException">InvalidConfig: missing or invalid fields, an unsupported checkpoint format
    /// (marlin, bitblas, ...), or a dynamic key that is not a valid regular expression.</exception>
    public static GptqQuantizationConfig Read(JsonObject quantizationConfig, string configPath)
    {
        var root = new JsonObject { ["quantization_config"] = quantizationConfig.DeepClone() };
        var r = new ConfigReader(root, configPath, "quantization_config");
        int bits = r.Int("bits");
        if (!PackedScheme.PackableBits.Contains(bits))
            throw r.Error("bits", $"is {bits}; GPTQ checkpoints hold 2, 3, 4 or 8 bits");
        int groupSize = r.Int("group_size", -1);
        bool sym = r.Bool("sym", true);
        bool descAct = r.Bool("desc_act", false);
        string format = r.String("checkpoint_format") ?? "gptq";
        if (r.Bool("is_marlin_format", false)) format = "marlin";
        if (format is not ("gptq" or "gptq_v2"))
            throw r.Error("checkpoint_format", $"is '{format}'; only the gptq (v1) and gptq_v2 layouts can be read (convert it back to gptq with GPTQModel)");
        var rules = new List<Rule>();
        if (r.Section["dynamic"] is JsonObject dynamic)
        {
            foreach (var (key, value) in dynamic)
            {
                bool negative = key.StartsWith("-:", StringComparison.Ordinal);
                string pattern = negative || key.StartsWith("+:", StringComparison.Ordinal) ? key[2..] : key;
                Regex regex;
                try { regex = ModuleNamePatterns.FromPython(pattern); }
                catch (ArgumentException e)
                {
                    throw r.Error("dynamic", $"key '{key}' is not a valid regular expression: {e.Message}");
                }
                rules.Add(new Rule(key, regex, negative, value as JsonObject ?? new JsonObject()));
            }
        }
        else if (r.Section["dynamic"] is not null)
        {
            throw r.Error("dynamic", "must be an object of regex → overrides");
        }
        return new GptqQuantizationConfig(new PackedScheme(bits, groupSize, sym), descAct, format, rules);
    }

    /// <summary>The scheme of module <paramref name="module"/> (e.g. "model.layers.0.mlp.experts.3.down_proj"), or null when a "-:" rule excludes it.</summary>
    public PackedScheme? SchemeFor(string module)
    {
        foreach (var rule in _rules)
        {
            if (!rule.Pattern.IsMatch(module)) continue;
            if (rule.Negative) return null;
            var o = rule.Overrides;
            return new PackedScheme(
                o["bits"] is JsonValue b && b.TryGetValue<int>(out var bits) ? bits : BaseScheme.Bits,
                o["group_size"] is JsonValue g && g.TryGetValue<int>(out var gs) ? gs : BaseScheme.GroupSize,
                o["sym"] is JsonValue s && s.TryGetValue<bool>(out var sym) ? sym : BaseScheme.Symmetric);
        }
        return BaseScheme;
    }

    /// <summary>
    /// Builds the <c>quantization_config</c> of a GPTQ v1 checkpoint: the most common scheme of
    /// <paramref name="quantized"/> becomes the base, every other scheme one <c>"+:"</c> dynamic rule matching exactly its
    /// modules, and <paramref name="unquantized"/> Linear modules (routers, lm_head, attention left in full precision)
    /// one <c>"-:"</c> rule.
    /// </summary>
    /// <exception cref="ArgumentException">No quantized module, or a module listed both ways.</exception>
    /// <exception cref="MoeCompressException">Usage: a width the layout cannot store.</exception>
    public static JsonObject Build(IReadOnlyDictionary<string, PackedScheme> quantized, IEnumerable<string> unquantized,
        bool descAct, string? quantizer = null)
    {
        var groups = GroupBySchemes(quantized, unquantized, out var skipped);
        foreach (var (scheme, modules) in groups)
            if (!PackedScheme.PackableBits.Contains(scheme.Bits)) GptqLayout.Check(modules[0], 32, 32, scheme.Bits);
        var baseScheme = groups[0].Scheme;
        var q = new JsonObject
        {
            ["quant_method"] = Method,
            ["bits"] = baseScheme.Bits,
            ["group_size"] = baseScheme.GroupSize <= 0 ? -1 : baseScheme.GroupSize,
            ["sym"] = baseScheme.Symmetric,
            ["desc_act"] = descAct,
            ["static_groups"] = false,
            ["true_sequential"] = true,
            ["lm_head"] = false,
            ["checkpoint_format"] = "gptq",
        };
        var dynamic = new JsonObject();
        foreach (var (scheme, modules) in groups.Skip(1))
            dynamic["+:" + ModuleNamePatterns.ExactNames(modules)] = new JsonObject
            {
                ["bits"] = scheme.Bits,
                ["group_size"] = scheme.GroupSize <= 0 ? -1 : scheme.GroupSize,
                ["sym"] = scheme.Symmetric,
            };
        if (skipped.Count > 0) dynamic["-:" + ModuleNamePatterns.ExactNames(skipped)] = new JsonObject();
        if (dynamic.Count > 0) q["dynamic"] = dynamic;
        if (quantizer is not null) q["meta"] = new JsonObject { ["quantizer"] = new JsonArray(quantizer) };
        return q;
    }

    /// <summary>
    /// Quantized modules grouped by scheme, most modules first (ties: more bits, then smaller groups, then symmetric
    /// first), each list sorted by name; <paramref name="skipped"/> = the sorted unquantized names.
    /// </summary>
    internal static List<(PackedScheme Scheme, List<string> Modules)> GroupBySchemes(
        IReadOnlyDictionary<string, PackedScheme> quantized, IEnumerable<string> unquantized, out List<string> skipped)
    {
        if (quantized.Count == 0) throw new ArgumentException("no quantized module", nameof(quantized));
        skipped = unquantized.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();
        foreach (var name in skipped)
            if (quantized.ContainsKey(name))
                throw new ArgumentException($"module '{name}' is listed as quantized and as unquantized", nameof(unquantized));
        return quantized.GroupBy(kv => kv.Value)
            .Select(g => (Scheme: g.Key, Modules: g.Select(kv => kv.Key).Order(StringComparer.Ordinal).ToList()))
            .OrderByDescending(g => g.Modules.Count)
            .ThenByDescending(g => g.Scheme.Bits)
            .ThenBy(g => g.Scheme.GroupSize <= 0 ? int.MaxValue : g.Scheme.GroupSize)
            .ThenByDescending(g => g.Scheme.Symmetric)
            .ToList();
    }
}
