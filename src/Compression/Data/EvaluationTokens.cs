namespace MoECompress.Compression.Data;

/// <summary>Held-out text as one long token stream, for sliding-window perplexity.</summary>
public sealed record EvaluationTokens
{
    /// <summary>The stream: BOS first when <see cref="BosPrepended"/>, then the documents joined by <see cref="SeparatorId"/>.</summary>
    public required int[] Tokens { get; init; }
    /// <summary>Input files in stream order.</summary>
    public required IReadOnlyList<string> Files { get; init; }
    /// <summary>Number of documents read.</summary>
    public required int Documents { get; init; }
    /// <summary>Token placed between documents (EOS, else BOS), or null.</summary>
    public required int? SeparatorId { get; init; }
    /// <summary>Whether the stream starts with BOS.</summary>
    public required bool BosPrepended { get; init; }
    /// <summary>The tokenizer used.</summary>
    public required string TokenizerName { get; init; }
}
