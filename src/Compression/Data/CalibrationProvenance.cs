namespace MoECompress.Compression.Data;

/// <summary>Where a <see cref="CalibrationSet"/> came from and how its sequences were drawn, for reports and manifests.</summary>
public sealed record CalibrationProvenance
{
    /// <summary>Input files, in the order their documents enter the token stream.</summary>
    public required IReadOnlyList<string> Files { get; init; }
    /// <summary>Number of documents read (text and pre-tokenized).</summary>
    public required int Documents { get; init; }
    /// <summary>How many of <see cref="Documents"/> were given as "input_ids" and used as they are.</summary>
    public required int PretokenizedDocuments { get; init; }
    /// <summary>Length of the joined token stream the sequences were cut from (separators included, BOS not).</summary>
    public required long TotalTokens { get; init; }
    /// <summary>Token placed between documents (EOS, else BOS), or null when the tokenizer has neither.</summary>
    public required int? SeparatorId { get; init; }
    /// <summary>Whether every sequence starts with the BOS token.</summary>
    public required bool BosPrepended { get; init; }
    /// <summary>How the windows were chosen.</summary>
    public required CalibrationSampling Sampling { get; init; }
    /// <summary>Seed of the draw (unused for <see cref="CalibrationSampling.Sequential"/>).</summary>
    public required int Seed { get; init; }
    /// <summary>Stream offset of each sequence's first stream token, in sequence order.</summary>
    public required IReadOnlyList<long> Offsets { get; init; }
    /// <summary>The tokenizer used (<c>ITextTokenizer.Name</c>).</summary>
    public required string TokenizerName { get; init; }
    /// <summary>How .txt files were divided into documents.</summary>
    public required TextDocumentSplit TextSplit { get; init; }

    /// <summary>One line for logs and reports.</summary>
    public string Describe(int count, int seqLen)
    {
        var how = Sampling switch
        {
            CalibrationSampling.Sequential => "consecutive non-overlapping windows from the start",
            CalibrationSampling.RandomNonOverlapping => $"non-overlapping windows at random offsets (seed {Seed})",
            _ => $"windows at independent random offsets, overlapping because the stream is shorter than samples x length (seed {Seed})",
        };
        var bos = BosPrepended ? ", each starting with BOS" : "";
        return $"{count} sequences of {seqLen} tokens{bos}: {how}, from a stream of {TotalTokens:N0} tokens " +
               $"({Documents} documents in {Files.Count} file(s), {TokenizerName})";
    }
}

/// <summary>How calibration windows were chosen from the token stream.</summary>
public enum CalibrationSampling
{
    /// <summary>Every non-overlapping window from offset 0 ("all"); the remainder is dropped.</summary>
    Sequential,
    /// <summary>Seeded random offsets, no two windows sharing a token (used when the stream is long enough).</summary>
    RandomNonOverlapping,
    /// <summary>Seeded independent uniform offsets that may overlap (GPTQ's sampler; used when the stream is too short
    /// for non-overlapping windows).</summary>
    RandomOverlapping,
}
