using MoECompress.Compression.Calibration;

namespace MoECompress.Compression.Pruning;

/// <summary>Where a pruning run's calibration statistics came from (task-adaptive pruning keeps the experts of this data).</summary>
/// <param name="Path">Full path of the saved profile, or null when calibrated in memory.</param>
/// <param name="Data">The calibration data the profile was gathered on (files, sequences, seed), when recorded.</param>
/// <param name="Tokens">Calibration tokens N.</param>
/// <param name="CreatedUtc">When the profile was made.</param>
public sealed record ProfileSource(string? Path, CalibrationDataInfo? Data, long Tokens, DateTimeOffset CreatedUtc)
{
    /// <summary>"loaded" for a saved profile, "calibrated" for an in-memory run.</summary>
    public string Kind => Path is null ? "calibrated" : "loaded";

    /// <summary>The calibration data in words (the data's own description, else its files).</summary>
    public string DescribeData() => Data is null ? "unrecorded data"
        : Data.Description ?? $"{Data.Sequences} sequences of {Data.SeqLen} tokens from {string.Join(", ", Data.Files)}";

    /// <summary>One line for reports.</summary>
    public string Describe()
    {
        var data = DescribeData();
        return Path is null
            ? $"calibrated in memory on {data} ({Tokens:N0} tokens)"
            : $"profile {Path} ({Tokens:N0} tokens of {data})";
    }
}
