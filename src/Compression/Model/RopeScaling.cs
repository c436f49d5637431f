using System.Text.Json.Nodes;

namespace MoECompress.Compression.Model;

/// <summary>The rotary-embedding scaling schemes the engine implements (config.json <c>rope_scaling.rope_type</c>).</summary>
public enum RopeType
{
    /// <summary>Plain RoPE: inv_freq_i = theta^(-2i/d).</summary>
    Default,
    /// <summary>Position interpolation: inv_freq / factor.</summary>
    Linear,
    /// <summary>Dynamic NTK: theta grows with the sequence length once it exceeds the original context.</summary>
    Dynamic,
    /// <summary>YaRN: per-frequency blend of interpolation and extrapolation, plus an attention factor on cos/sin.</summary>
    Yarn,
    /// <summary>Llama 3.1: low frequencies divided by factor, a smooth ramp between low_freq_factor and high_freq_factor.</summary>
    Llama3,
    /// <summary>LongRoPE (Phi-3): per-frequency short/long rescale factors.</summary>
    LongRope,
}

/// <summary>
/// The <c>rope_scaling</c> (transformers ≤ 4.x) or <c>rope_parameters</c> (transformers 5) block of config.json,
/// with the defaults transformers applies. Nullable fields are absent in the config.
/// </summary>
public sealed record RopeScaling
{
    /// <summary>No scaling.</summary>
    public static RopeScaling None { get; } = new() { Type = RopeType.Default };

    public required RopeType Type { get; init; }
    /// <summary>Scaling factor (<c>factor</c>); null when the config leaves it out.</summary>
    public double? Factor { get; init; }
    /// <summary><c>original_max_position_embeddings</c>: the pre-training context length.</summary>
    public int? OriginalMaxPositionEmbeddings { get; init; }
    /// <summary>YaRN / LongRoPE: explicit factor applied to cos and sin.</summary>
    public double? AttentionFactor { get; init; }
    /// <summary>YaRN <c>beta_fast</c> (default 32).</summary>
    public double BetaFast { get; init; } = 32;
    /// <summary>YaRN <c>beta_slow</c> (default 1).</summary>
    public double BetaSlow { get; init; } = 1;
    /// <summary>DeepSeek YaRN <c>mscale</c>.</summary>
    public double? Mscale { get; init; }
    /// <summary>DeepSeek YaRN <c>mscale_all_dim</c>: also scales the attention softmax of MLA by mscale².</summary>
    public double? MscaleAllDim { get; init; }
    /// <summary>YaRN <c>truncate</c>: round the correction range to whole dimensions (default true).</summary>
    public bool Truncate { get; init; } = true;
    /// <summary>Llama 3 <c>low_freq_factor</c>.</summary>
    public double LowFreqFactor { get; init; } = 1;
    /// <summary>Llama 3 <c>high_freq_factor</c>.</summary>
    public double HighFreqFactor { get; init; } = 4;
    /// <summary>LongRoPE <c>short_factor</c> (one value per frequency).</summary>
    public IReadOnlyList<double>? ShortFactor { get; init; }
    /// <summary>LongRoPE <c>long_factor</c> (one value per frequency).</summary>
    public IReadOnlyList<double>? LongFactor { get; init; }
    /// <summary>
    /// Phi-3.5-MoE LongRoPE <c>short_mscale</c> / <c>long_mscale</c>: the factor on cos and sin for sequences within /
    /// beyond the original context, replacing the computed attention factor when given.
    /// </summary>
    public double? ShortMscale { get; init; }
    public double? LongMscale { get; init; }

    /// <summary>
    /// Reads the scaling block of a config: <c>rope_scaling</c>, else <c>rope_parameters</c>; null or a "default" type
    /// gives <see cref="None"/>. Unknown types throw InvalidConfig.
    /// </summary>
    internal static RopeScaling Parse(EngineConfigReader config)
    {
        var key = config.Has("rope_scaling") ? "rope_scaling" : config.Has("rope_parameters") ? "rope_parameters" : null;
        if (key is null) return None;
        if (config.Node(key) is not JsonObject obj) throw config.Invalid(key, "must be an object");
        var sub = new EngineConfigReader(obj, config.Path, config.KeyPrefix);
        var typeName = sub.String("rope_type") ?? sub.String("type") ?? "default";
        var type = typeName switch
        {
            "default" => RopeType.Default,
            "linear" => RopeType.Linear,
            "dynamic" => RopeType.Dynamic,
            "yarn" => RopeType.Yarn,
            "llama3" => RopeType.Llama3,
            "longrope" or "su" => RopeType.LongRope,
            _ => throw config.Invalid($"{key}.rope_type", $"'{typeName}' is not supported by the forward engine (default, linear, dynamic, yarn, llama3, longrope)"),
        };
        var scaling = new RopeScaling
        {
            Type = type,
            Factor = Prefixed(sub, key, "factor", s => s.Double("factor")),
            OriginalMaxPositionEmbeddings = Prefixed(sub, key, "original_max_position_embeddings", s => s.Int("original_max_position_embeddings")),
            AttentionFactor = Prefixed(sub, key, "attention_factor", s => s.Double("attention_factor")),
            BetaFast = Prefixed(sub, key, "beta_fast", s => s.Double("beta_fast")) is { } bf && bf != 0 ? bf : 32,
            BetaSlow = Prefixed(sub, key, "beta_slow", s => s.Double("beta_slow")) is { } bs && bs != 0 ? bs : 1,
            Mscale = Prefixed(sub, key, "mscale", s => s.Double("mscale")),
            MscaleAllDim = Prefixed(sub, key, "mscale_all_dim", s => s.Double("mscale_all_dim")),
            Truncate = Prefixed(sub, key, "truncate", s => s.Bool("truncate")) ?? true,
            LowFreqFactor = Prefixed(sub, key, "low_freq_factor", s => s.Double("low_freq_factor")) ?? 1,
            HighFreqFactor = Prefixed(sub, key, "high_freq_factor", s => s.Double("high_freq_factor")) ?? 4,
            ShortFactor = ReadList(sub, key, "short_factor"),
            LongFactor = ReadList(sub, key, "long_factor"),
            ShortMscale = Prefixed(sub, key, "short_mscale", s => s.Double("short_mscale")),
            LongMscale = Prefixed(sub, key, "long_mscale", s => s.Double("long_mscale")),
        };
        switch (type)
        {
            case RopeType.Linear or RopeType.Dynamic or RopeType.Llama3 when scaling.Factor is null:
                throw config.Invalid($"{key}.factor", $"is required for rope type '{typeName}'");
            case RopeType.Llama3 when scaling.OriginalMaxPositionEmbeddings is null:
                throw config.Invalid($"{key}.original_max_position_embeddings", "is required for rope type 'llama3'");
            case RopeType.Llama3 when scaling.HighFreqFactor <= scaling.LowFreqFactor:
                throw config.Invalid($"{key}.high_freq_factor", "must be greater than low_freq_factor");
            case RopeType.LongRope when scaling.ShortFactor is null || scaling.LongFactor is null:
                throw config.Invalid(key, "needs short_factor and long_factor for rope type 'longrope'");
        }
        if (scaling.Factor is <= 0) throw config.Invalid($"{key}.factor", "must be positive");
        return scaling;
    }

    private static T? Prefixed<T>(EngineConfigReader sub, string key, string name, Func<EngineConfigReader, T?> read) where T : struct
    {
        try { return read(sub); }
        catch (Formats.Errors.MoeCompressException)
        {
            throw sub.Invalid($"{key}.{name}", $"has an unusable value {EngineConfigReader.Describe(sub.Node(name))}");
        }
    }

    private static IReadOnlyList<double>? ReadList(EngineConfigReader sub, string key, string name)
    {
        var node = sub.Node(name);
        if (node is null) return null;
        if (node is not JsonArray arr) throw sub.Invalid($"{key}.{name}", "must be a list of numbers");
        return arr.Select((n, i) => sub.ReadDouble(n, $"{key}.{name}[{i}]") ?? throw sub.Invalid($"{key}.{name}[{i}]", "is null")).ToArray();
    }
}
