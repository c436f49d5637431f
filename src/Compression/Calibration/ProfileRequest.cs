namespace MoECompress.Compression.Calibration;

/// <summary>
/// Where the calibration statistics of a compression step come from: a saved profile (<see cref="Profile"/>, from
/// <c>moe-compress calibrate</c>), or a calibration run in memory over <see cref="Data"/> (null = the bundled set).
/// </summary>
public sealed record ProfileRequest
{
    /// <summary>Saved profile folder or profile.json; null to calibrate now.</summary>
    public string? Profile { get; init; }
    /// <summary>Calibration text (.jsonl/.txt file or folder); null = the bundled calibration set.</summary>
    public string? Data { get; init; }
    /// <summary>Sequences to draw (null or 0 = every window).</summary>
    public int? Samples { get; init; } = 128;
    /// <summary>Tokens per sequence.</summary>
    public int SeqLen { get; init; } = 512;
    /// <summary>Seed of the window draw.</summary>
    public int Seed { get; init; }
    /// <summary>Tokens per micro-batch of the streamed run.</summary>
    public int MicroBatch { get; init; } = 2048;

    /// <summary>The data options of <see cref="CalibrationPass.LoadTokens(Formats.Families.ModelCheckpoint, string?, Data.CalibrationDataOptions, IProgress{string}?, CancellationToken)"/>.</summary>
    public Data.CalibrationDataOptions DataOptions => new() { Samples = Samples, SeqLen = SeqLen, Seed = Seed };
}
