using MoECompress.Formats.Families;

namespace MoECompress.Compression.Calibration;

/// <summary>Which model a calibration profile describes (recorded in profile.json).</summary>
public sealed record CalibrationModelInfo
{
    /// <summary>Full path of the model folder, or null when the model was not read from disk.</summary>
    public string? Path { get; init; }
    /// <summary>Family adapter name ("mixtral", "deepseek-v3", ...).</summary>
    public required string Family { get; init; }
    /// <summary>config.json architecture.</summary>
    public required string Architecture { get; init; }
    /// <summary>SHA-256 (lower-case hex) of the config.json bytes, to tell whether a profile belongs to a model.</summary>
    public string? ConfigSha256 { get; init; }
    /// <summary>The tokenizer used (<c>ITextTokenizer.Name</c>), or null.</summary>
    public string? Tokenizer { get; init; }
    /// <summary>Decoder layers (dense layers included, MTP layers not).</summary>
    public required int NumLayers { get; init; }
    /// <summary>Routed experts per MoE layer.</summary>
    public required int NumExperts { get; init; }
    /// <summary>Experts chosen per token.</summary>
    public required int TopK { get; init; }
    /// <summary>H.</summary>
    public required int HiddenSize { get; init; }
    /// <summary>I of one routed expert.</summary>
    public required int ExpertIntermediateSize { get; init; }

    /// <summary>The facts of a family adapter's <see cref="MoEConfig"/>.</summary>
    public static CalibrationModelInfo From(MoEConfig moe, string? path = null, string? configSha256 = null, string? tokenizer = null) => new()
    {
        Path = path,
        Family = moe.Family,
        Architecture = moe.Architecture,
        ConfigSha256 = configSha256,
        Tokenizer = tokenizer,
        NumLayers = moe.NumLayers,
        NumExperts = moe.NumExperts,
        TopK = moe.TopK,
        HiddenSize = moe.HiddenSize,
        ExpertIntermediateSize = moe.ExpertIntermediateSize,
    };
}
