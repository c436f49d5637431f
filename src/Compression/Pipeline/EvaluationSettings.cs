namespace MoECompress.Compression.Pipeline;

/// <summary>The end-to-end evaluation of a <see cref="CompressionRecipe"/>: the final output against the original input.</summary>
public sealed record EvaluationSettings
{
    /// <summary>Held-out text; null = the bundled held-out text.</summary>
    public string? Data { get; init; }
    /// <summary>Use at most this many held-out tokens; null = all.</summary>
    public int? Tokens { get; init; }
}
