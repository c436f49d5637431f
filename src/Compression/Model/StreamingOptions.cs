namespace MoECompress.Compression.Model;

/// <summary>Settings of a layer-streaming run.</summary>
public sealed record StreamingOptions
{
    /// <summary>Tokens per micro-batch pushed through a layer at once (sequences of equal length are batched; default 2048).</summary>
    public int MicroBatchTokens { get; init; } = 2048;
    /// <summary>Rows per lm_head call: bounds the logits held at once to HeadChunkTokens × vocab floats (default 512).</summary>
    public int HeadChunkTokens { get; init; } = 512;
    /// <summary>Hidden states larger than this (bytes, float32) are kept in a temporary file instead of RAM (default 4 GiB).</summary>
    public long MaxResidentHiddenStateBytes { get; init; } = 4L << 30;
    /// <summary>Folder for the spill file (default: the system temp folder). The file is deleted when the session ends.</summary>
    public string? SpillDirectory { get; init; }

    internal void Validate()
    {
        if (MicroBatchTokens <= 0) throw new ArgumentOutOfRangeException(nameof(MicroBatchTokens), MicroBatchTokens, "must be positive");
        if (HeadChunkTokens <= 0) throw new ArgumentOutOfRangeException(nameof(HeadChunkTokens), HeadChunkTokens, "must be positive");
        if (MaxResidentHiddenStateBytes < 0) throw new ArgumentOutOfRangeException(nameof(MaxResidentHiddenStateBytes), MaxResidentHiddenStateBytes, "must not be negative");
    }
}
