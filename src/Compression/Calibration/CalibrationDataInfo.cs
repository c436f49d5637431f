using MoECompress.Compression.Data;

namespace MoECompress.Compression.Calibration;

/// <summary>Where a profile's calibration tokens came from (recorded in profile.json).</summary>
public sealed record CalibrationDataInfo
{
    /// <summary>Input files, in stream order.</summary>
    public required IReadOnlyList<string> Files { get; init; }
    /// <summary>Documents read.</summary>
    public int Documents { get; init; }
    /// <summary>Number of calibration sequences.</summary>
    public required int Sequences { get; init; }
    /// <summary>Tokens per sequence.</summary>
    public required int SeqLen { get; init; }
    /// <summary>Seed of the window draw.</summary>
    public int Seed { get; init; }
    /// <summary>How windows were drawn ("Sequential", "RandomNonOverlapping", "RandomOverlapping").</summary>
    public string? Sampling { get; init; }
    /// <summary>Tokens in the joined stream the windows were cut from.</summary>
    public long StreamTokens { get; init; }
    /// <summary>Whether every sequence starts with BOS.</summary>
    public bool BosPrepended { get; init; }
    /// <summary>One line describing the set.</summary>
    public string? Description { get; init; }

    /// <summary>The provenance of a loaded calibration set.</summary>
    public static CalibrationDataInfo From(CalibrationSet set) => new()
    {
        Files = set.Provenance.Files.ToArray(),
        Documents = set.Provenance.Documents,
        Sequences = set.Count,
        SeqLen = set.SeqLen,
        Seed = set.Provenance.Seed,
        Sampling = set.Provenance.Sampling.ToString(),
        StreamTokens = set.Provenance.TotalTokens,
        BosPrepended = set.Provenance.BosPrepended,
        Description = set.ToString(),
    };
}
