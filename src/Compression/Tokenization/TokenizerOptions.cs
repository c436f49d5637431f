namespace MoECompress.Compression.Tokenization;

/// <summary>
/// Overrides for how <see cref="TokenizerLoader"/> frames encoded text with special tokens.
/// Null leaves the decision to the model's files (tokenizer_config.json, then the tokenizer's own template).
/// </summary>
public sealed record TokenizerOptions
{
    /// <summary>Force (true) or suppress (false) the BOS token that <c>Encode(text, true)</c> prepends.</summary>
    public bool? AddBos { get; init; }

    /// <summary>Force (true) or suppress (false) the EOS token that <c>Encode(text, true)</c> appends.</summary>
    public bool? AddEos { get; init; }

    /// <summary>The defaults: follow the model's files.</summary>
    public static TokenizerOptions Default { get; } = new();
}
