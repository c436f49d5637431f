namespace MoECompress.Compression.Model;

/// <summary>
/// A group of sequences of equal length run through a layer together. Row r of the flattened [B·L, H] token matrix
/// is position <c>r % SequenceLength</c> of sequence <c>SequenceIndices[r / SequenceLength]</c>.
/// </summary>
/// <param name="SequenceIndices">Indices of the sequences in the run's input list.</param>
/// <param name="SequenceLength">Tokens per sequence (all equal within a micro-batch).</param>
public sealed record MicroBatch(IReadOnlyList<int> SequenceIndices, int SequenceLength)
{
    /// <summary>Number of token rows (B·L).</summary>
    public int TokenCount => SequenceIndices.Count * SequenceLength;

    /// <summary>The sequence index and position of a token row.</summary>
    public (int Sequence, int Position) Locate(long row) =>
        (SequenceIndices[(int)(row / SequenceLength)], (int)(row % SequenceLength));
}
