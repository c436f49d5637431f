using System.Text.Json.Nodes;
using MoECompress.Compression.Merging;
using MoECompress.Compression.Quantization;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Quantized;

namespace MoECompress.Compression.Pipeline;

/// <summary>
/// What <c>moe-compress compress</c> does to a model: the calibration text (drawn once), an ordered list of steps
/// (prune, merge, quantize) and an optional end-to-end evaluation of the result against the original. Build it in C#
/// or read it from a YAML/JSON file with <see cref="Load"/>.
/// </summary>
/// <example>
/// <code>
/// calibration: {samples: 64, seq_len: 256}
/// steps:
///   - prune: {method: reap, ratio: 0.25}
///   - quantize: {bits: 3, method: gptq, format: gptq}
/// evaluate: {tokens: 4096}
/// </code>
/// </example>
public sealed record CompressionRecipe
{
    /// <summary>Where the calibration tokens come from; one draw serves every step.</summary>
    public CalibrationSettings Calibration { get; init; } = new();
    /// <summary>The steps, in order.</summary>
    public IReadOnlyList<CompressionStep> Steps { get; init; } = [];
    /// <summary>Measure the final output against the input on held-out text; null = no evaluation.</summary>
    public EvaluationSettings? Evaluate { get; init; }

    /// <summary>The step names a recipe may use.</summary>
    public static IReadOnlyList<string> StepKinds { get; } = ["prune", "merge", "quantize"];

    /// <summary>
    /// Checks what can be checked without a model: at least one step; quantize last and at most once (pruning and
    /// merging need full-precision expert weights); calibration and evaluation values in range.
    /// </summary>
    /// <exception cref="MoeCompressException">Usage, naming the step and the key.</exception>
    public void Validate()
    {
        if (Steps.Count == 0) throw new MoeCompressException(ErrorKind.Usage, "recipe: steps: give at least one step (prune, merge or quantize)");
        for (var i = 0; i < Steps.Count; i++)
        {
            if (Steps[i] is null) throw new MoeCompressException(ErrorKind.Usage, $"recipe: steps[{i}]: empty step");
            if (Steps[i] is QuantizeStep && i < Steps.Count - 1)
                throw new MoeCompressException(ErrorKind.Usage,
                    $"recipe: steps[{i + 1}] ({Steps[i + 1].Kind}): cannot follow quantize (steps[{i}]): {Steps[i + 1].Kind} needs full-precision expert weights; put quantize last");
        }
        if (Calibration.Samples < 0) throw new MoeCompressException(ErrorKind.Usage, $"recipe: calibration.samples {Calibration.Samples}: must be 0 (every window) or more");
        if (Calibration.SeqLen < 1) throw new MoeCompressException(ErrorKind.Usage, $"recipe: calibration.seq_len {Calibration.SeqLen}: must be at least 1");
        if (Evaluate?.Tokens is < 1) throw new MoeCompressException(ErrorKind.Usage, $"recipe: evaluate.tokens {Evaluate.Tokens}: must be at least 1");
    }

    /// <summary>
    /// Reads a recipe file: YAML, or JSON when its name ends in .json. Unknown keys, wrong types and impossible orders
    /// are refused with the file, step and key named. Relative data paths are taken relative to the recipe's folder.
    /// </summary>
    /// <exception cref="MoeCompressException">Usage: unreadable file, bad YAML/JSON, unknown or invalid keys.</exception>
    public static CompressionRecipe Load(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        var (root, r) = RecipeReader.Read(path);
        var folder = Path.GetDirectoryName(Path.GetFullPath(path))!;
        string? Data(string? p) => p is null ? null : Path.GetFullPath(p, folder);
        r.Keys(root, "", "calibration", "steps", "evaluate");

        var cal = r.Object(root, "calibration", "");
        r.Keys(cal, "calibration", "data", "samples", "seq_len", "seed");
        var defaults = new CalibrationSettings();
        var calibration = new CalibrationSettings
        {
            Data = Data(r.String(cal, "data", "calibration")),
            Samples = r.Integer(cal, "samples", "calibration", 0) ?? defaults.Samples,
            SeqLen = r.Integer(cal, "seq_len", "calibration", 1) ?? defaults.SeqLen,
            Seed = r.Integer(cal, "seed", "calibration") ?? defaults.Seed,
        };

        EvaluationSettings? evaluate = null;
        if (root.ContainsKey("evaluate"))
        {
            var ev = r.Object(root, "evaluate", "");
            r.Keys(ev, "evaluate", "data", "tokens");
            evaluate = new EvaluationSettings { Data = Data(r.String(ev, "data", "evaluate")), Tokens = r.Integer(ev, "tokens", "evaluate", 1) };
        }

        if (root["steps"] is not JsonArray list) throw r.Error("steps", root["steps"] is null ? "missing: give a list of steps (prune, merge, quantize)" : "expected a list of steps");
        var steps = new List<CompressionStep>();
        for (var i = 0; i < list.Count; i++)
        {
            if (list[i] is not JsonObject item || item.Count != 1)
                throw r.Error($"steps[{i}]", $"expected one step name ({string.Join(", ", StepKinds)}) with its options, e.g. '- prune: {{ratio: 0.25}}'");
            var (kind, body) = item.First();
            var where = $"steps[{i}] ({kind})";
            if (body is not null and not JsonObject) throw r.Error(where, "expected a mapping of options");
            var o = (JsonObject?)body ?? new JsonObject();
            steps.Add(kind switch
            {
                "prune" => Prune(r, o, where),
                "merge" => Merge(r, o, where),
                "quantize" => Quantize(r, o, where),
                _ => throw r.Error($"steps[{i}]", $"unknown step '{kind}' (known: {string.Join(", ", StepKinds)})"),
            });
        }
        var recipe = new CompressionRecipe { Calibration = calibration, Steps = steps, Evaluate = evaluate };
        try
        {
            recipe.Validate();
        }
        catch (MoeCompressException e)
        {
            throw new MoeCompressException(e.Kind, $"{Path.GetFullPath(path)}: {e.Message["recipe: ".Length..]}");
        }
        return recipe;
    }

    private static PruneStep Prune(RecipeReader r, JsonObject o, string where)
    {
        r.Keys(o, where, "method", "ratio", "keep", "global", "allow_super_experts", "propagate");
        return new PruneStep
        {
            Method = r.String(o, "method", where),
            Ratio = r.Number(o, "ratio", where),
            Keep = r.Integer(o, "keep", where),
            Global = r.Bool(o, "global", where) ?? false,
            AllowSuperExperts = r.Bool(o, "allow_super_experts", where) ?? false,
            Propagate = r.Enum<Quantization.Propagation>(o, "propagate", where),
        };
    }

    private static MergeStep Merge(RecipeReader r, JsonObject o, string where)
    {
        r.Keys(o, where, "method", "ratio", "keep", "clustering", "rank", "energy", "whiten", "router_rows", "allow_super_experts",
            "align", "max_cluster_size", "router_samples", "kmeans_seed", "propagate");
        var d = new MergeStep();
        return new MergeStep
        {
            Method = r.Enum<MergeMethod>(o, "method", where) ?? d.Method,
            Ratio = r.Number(o, "ratio", where),
            Keep = r.Integer(o, "keep", where),
            Clustering = r.Enum<ClusteringMethod>(o, "clustering", where) ?? d.Clustering,
            Rank = r.Integer(o, "rank", where),
            Energy = r.Number(o, "energy", where),
            Whiten = r.Bool(o, "whiten", where) ?? false,
            RouterRows = r.Enum<RouterRowChoice>(o, "router_rows", where) ?? d.RouterRows,
            AllowSuperExperts = r.Bool(o, "allow_super_experts", where) ?? false,
            Align = r.Bool(o, "align", where) ?? d.Align,
            MaxClusterSize = r.Integer(o, "max_cluster_size", where),
            RouterSamples = r.Integer(o, "router_samples", where) ?? d.RouterSamples,
            KMeansSeed = r.Integer(o, "kmeans_seed", where) ?? d.KMeansSeed,
            Propagate = r.Enum<Quantization.Propagation>(o, "propagate", where),
        };
    }

    private static QuantizeStep Quantize(RecipeReader r, JsonObject o, string where)
    {
        r.Keys(o, where, "bits", "size", "method", "format", "granularity", "uniform", "candidates", "group_size", "sym", "act_order",
            "gate_weighted", "alpha", "beta", "gamma", "attention_bits", "shared_expert_bits", "propagate", "max_memory", "layers",
            "max_experts_per_chunk");
        var d = new QuantizeStep();
        long? Size(string key) => r.String(o, key, where) is { } s ? ByteSize.Parse(s, $"{where}.{key}") : null;
        if (r.String(o, "format", where) is "gguf")
            throw r.Error($"{where}.format", "gguf is not a recipe format yet; run `moe-compress quantize --format gguf` on the recipe's output");
        return new QuantizeStep
        {
            Bits = r.Number(o, "bits", where),
            Size = Size("size"),
            Method = r.Enum<QuantizeMethod>(o, "method", where) ?? d.Method,
            Format = r.Enum<QuantizedFormat>(o, "format", where) ?? d.Format,
            Granularity = r.Enum<BitAllocationGranularity>(o, "granularity", where) ?? d.Granularity,
            Uniform = r.Bool(o, "uniform", where) ?? false,
            Candidates = r.Integers(o, "candidates", where)?.Distinct().Order().ToList() ?? d.Candidates,
            GroupSize = r.Integer(o, "group_size", where) ?? d.GroupSize,
            Symmetric = r.Bool(o, "sym", where) ?? false,
            ActOrder = r.Bool(o, "act_order", where) ?? false,
            GateWeighted = r.Bool(o, "gate_weighted", where) ?? false,
            Alpha = r.Number(o, "alpha", where) ?? d.Alpha,
            Beta = r.Number(o, "beta", where) ?? d.Beta,
            Gamma = r.Number(o, "gamma", where) ?? d.Gamma,
            AttentionBits = r.Integer(o, "attention_bits", where),
            SharedExpertBits = r.Integer(o, "shared_expert_bits", where),
            Propagate = r.Enum<Propagation>(o, "propagate", where) ?? d.Propagate,
            MaxMemoryBytes = Size("max_memory"),
            Layers = r.String(o, "layers", where) is { } l ? LayerRange.Parse(l, $"{where}.layers") : null,
            MaxExpertsPerChunk = r.Integer(o, "max_experts_per_chunk", where, 1),
        };
    }
}
