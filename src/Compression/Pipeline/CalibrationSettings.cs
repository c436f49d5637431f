namespace MoECompress.Compression.Pipeline;

/// <summary>The calibration text of a <see cref="CompressionRecipe"/>: drawn once, used by every step.</summary>
public sealed record CalibrationSettings
{
    /// <summary>Calibration text (.jsonl/.txt file or folder); null = the bundled calibration set.</summary>
    public string? Data { get; init; }
    /// <summary>Sequences to draw (0 = every window).</summary>
    public int Samples { get; init; } = 128;
    /// <summary>Tokens per sequence.</summary>
    public int SeqLen { get; init; } = 512;
    /// <summary>Seed of the window draw.</summary>
    public int Seed { get; init; }
}
