using System.Text.Json;
using System.Text.Json.Serialization;
using MoECompress.Formats.Errors;

namespace MoECompress.Compression.Substitution;

/// <summary>One MoE layer of a <see cref="SkipPlan"/>.</summary>
/// <param name="Layer">Decoder layer index.</param>
/// <param name="Mu">Skip the second expert when w₂/w₁ is below this.</param>
/// <param name="NormThreshold">Tokens whose MoE-block input norm is at least this are protected.</param>
/// <param name="CalibrationSkippedFraction">Fraction of the layer's expert calls skipped on the calibration tokens.</param>
public sealed record SkipPlanLayer(int Layer, double Mu, double NormThreshold, double CalibrationSkippedFraction);

/// <summary>
/// A dynamic expert-skipping plan (MC-MoE online dynamic pruning): per MoE layer the threshold μ_l on w₂/w₁ (a
/// quantile of its calibration distribution, the median by default) and the norm above which tokens are protected
/// (the top <see cref="ProtectFraction"/> of calibration tokens). Written by <c>moe-compress skip-plan</c>, applied by
/// <c>eval --skip-plan</c>; a JSON file.
/// </summary>
public sealed record SkipPlan
{
    public const string Format = "moe-compress-skip-plan";

    [JsonPropertyName("format")] public string FormatName { get; init; } = Format;
    [JsonPropertyName("version")] public int Version { get; init; } = 1;
    /// <summary>The model the plan was calibrated on.</summary>
    [JsonPropertyName("model")] public required string Model { get; init; }
    /// <summary>The quantile of w₂/w₁ each layer's μ is.</summary>
    [JsonPropertyName("quantile")] public required double Quantile { get; init; }
    /// <summary>Fraction of calibration tokens (largest block-input norm) protected from skipping.</summary>
    [JsonPropertyName("protect_fraction")] public required double ProtectFraction { get; init; }
    [JsonPropertyName("calibration_tokens")] public long CalibrationTokens { get; init; }
    [JsonPropertyName("layers")] public required IReadOnlyList<SkipPlanLayer> Layers { get; init; }

    private static readonly JsonSerializerOptions Options = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    public string ToJson() => JsonSerializer.Serialize(this, Options);

    /// <summary>Reads a plan file; Usage error naming the file when it is missing or not a plan.</summary>
    public static SkipPlan Load(string path)
    {
        var full = Path.GetFullPath(path);
        if (!File.Exists(full)) throw new MoeCompressException(ErrorKind.Usage, $"--skip-plan {full}: file not found");
        SkipPlan? plan;
        try
        {
            plan = JsonSerializer.Deserialize<SkipPlan>(File.ReadAllText(full), Options);
        }
        catch (JsonException e)
        {
            throw new MoeCompressException(ErrorKind.Usage, $"--skip-plan {full}: not a skip plan ({e.Message})");
        }
        if (plan is null || plan.FormatName != Format || plan.Version != 1 || plan.Layers is null)
            throw new MoeCompressException(ErrorKind.Usage, $"--skip-plan {full}: not a {Format} version 1 file");
        foreach (var l in plan.Layers)
            if (!(l.Mu >= 0) || double.IsInfinity(l.Mu) || double.IsNaN(l.NormThreshold) || l.Layer < 0)
                throw new MoeCompressException(ErrorKind.Usage, $"--skip-plan {full}: layer {l.Layer} has μ {l.Mu} and norm threshold {l.NormThreshold}; μ must be finite and ≥ 0");
        if (plan.Layers.Select(l => l.Layer).Distinct().Count() != plan.Layers.Count)
            throw new MoeCompressException(ErrorKind.Usage, $"--skip-plan {full}: a layer appears twice");
        return plan;
    }
}

/// <summary>A <see cref="SkipPlan"/> being applied: one <see cref="ExpertSkipRule"/> (with its counters) per planned layer.</summary>
public sealed class ExpertSkipping
{
    private readonly Dictionary<int, ExpertSkipRule> _rules;

    public ExpertSkipping(SkipPlan plan)
    {
        ArgumentNullException.ThrowIfNull(plan);
        Plan = plan;
        _rules = plan.Layers.ToDictionary(l => l.Layer, l => new ExpertSkipRule(l.Layer, l.Mu, l.NormThreshold));
    }

    public SkipPlan Plan { get; }

    /// <summary>The rules in layer order.</summary>
    public IReadOnlyList<ExpertSkipRule> Rules => _rules.Values.OrderBy(r => r.Layer).ToList();

    /// <summary>The rule of a layer, or null when the plan leaves it alone.</summary>
    public ExpertSkipRule? RuleFor(int layer) => _rules.GetValueOrDefault(layer);
}
