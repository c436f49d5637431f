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

    /// <summary>A profile already in memory (e.g. collected once by <c>compress</c> for its first step); takes precedence
    /// over <see cref="Profile"/>.</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public CalibrationProfile? Loaded { get; init; }

    /// <summary>
    /// Calibration tokens already drawn (e.g. by <c>compress</c>, which tokenizes once for every step); when set,
    /// <see cref="Data"/>, <see cref="Samples"/>, <see cref="SeqLen"/> and <see cref="Seed"/> are not read again.
    /// </summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public Data.CalibrationSet? Tokens { get; init; }

    /// <summary>The calibration tokens: <see cref="Tokens"/> when given (checked against the model's vocabulary), else
    /// drawn from <see cref="Data"/> with the model's tokenizer.</summary>
    public Data.CalibrationSet LoadTokens(Formats.Families.ModelCheckpoint checkpoint, IProgress<string>? progress = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        if (Tokens is null) return CalibrationPass.LoadTokens(checkpoint, Data, DataOptions, progress, cancellationToken);
        CalibrationPass.CheckTokenIds(Tokens, checkpoint);
        return Tokens;
    }

    /// <summary>The data options of <see cref="CalibrationPass.LoadTokens(Formats.Families.ModelCheckpoint, string?, Data.CalibrationDataOptions, IProgress{string}?, CancellationToken)"/>.</summary>
    public Data.CalibrationDataOptions DataOptions => new() { Samples = Samples, SeqLen = SeqLen, Seed = Seed };
}
