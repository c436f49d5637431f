namespace MoECompress.Compression.Calibration;

/// <summary>What <see cref="Calibrator.RunAsync"/> produced.</summary>
/// <param name="Profile">The profile (also saved).</param>
/// <param name="Directory">Full path of the profile folder.</param>
/// <param name="Elapsed">Wall time of the whole run.</param>
public sealed record CalibrationResult(CalibrationProfile Profile, string Directory, TimeSpan Elapsed)
{
    /// <summary>Full path of profile.safetensors.</summary>
    public string TensorPath => Path.Combine(Directory, CalibrationProfile.TensorFileName);
    /// <summary>Full path of profile.json.</summary>
    public string SummaryPath => Path.Combine(Directory, CalibrationProfile.SummaryFileName);
    /// <summary>Full path of the router-logit dump, or null when none was written.</summary>
    public string? RouterLogitsPath => Profile.RouterLogits is null ? null
        : Path.Combine(Directory, CalibrationProfile.RouterLogitsFolder, CalibrationProfile.RouterLogitsFileName);
    /// <summary>Calibration tokens per second of wall time.</summary>
    public double TokensPerSecond => Elapsed.TotalSeconds > 0 ? Profile.Tokens / Elapsed.TotalSeconds : 0;
}
