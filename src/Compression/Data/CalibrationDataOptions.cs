namespace MoECompress.Compression.Data;

/// <summary>How <see cref="CalibrationData.Load"/> draws calibration sequences.</summary>
public sealed record CalibrationDataOptions
{
    /// <summary>Number of sequences to draw at seeded random offsets; null or 0 takes every non-overlapping window
    /// from the start of the stream, in order.</summary>
    public int? Samples { get; init; } = 128;

    /// <summary>Length of every sequence in tokens (BOS included when <see cref="AddBos"/> applies).</summary>
    public int SeqLen { get; init; } = 512;

    /// <summary>Seed of the offset draw; the same inputs, tokenizer and options give the same sequences.</summary>
    public int Seed { get; init; }

    /// <summary>Start every sequence with the tokenizer's BOS token (when it has one), followed by SeqLen−1 stream tokens.</summary>
    public bool AddBos { get; init; } = true;

    /// <summary>How .txt files are divided into documents (see <see cref="TextDocumentSplit"/>).</summary>
    public TextDocumentSplit TextSplit { get; init; } = TextDocumentSplit.WholeFile;
}
