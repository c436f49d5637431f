using MoECompress.Compression.Calibration;

namespace MoECompress.Compression.Quantization;

/// <summary>
/// Which routed experts calibration covered too thinly for GPTQ: those of a saved profile's coverage report when the
/// quantization reads a profile, else those whose routed-token count in the pass that collects their Hessians is below
/// the collector's default threshold for the calibration set (<see cref="CoverageReport.DefaultThreshold"/>) — the same
/// rule a profile collected on that set would apply, without a separate calibration pass.
/// </summary>
public sealed class ColdExpertRule
{
    private readonly CoverageReport? _coverage;

    private ColdExpertRule(CoverageReport? coverage, double threshold)
    {
        _coverage = coverage;
        Threshold = threshold;
    }

    /// <summary>Routed tokens below which an expert is cold.</summary>
    public double Threshold { get; }

    /// <summary>The rule of <paramref name="profile"/>'s coverage report.</summary>
    public static ColdExpertRule FromProfile(CalibrationProfile profile)
    {
        ArgumentNullException.ThrowIfNull(profile);
        return new(profile.Coverage, profile.Coverage.ColdThreshold);
    }

    /// <summary>The threshold rule for <paramref name="tokens"/> calibration tokens routed top-<paramref name="topK"/> over
    /// <paramref name="numExperts"/> experts.</summary>
    public static ColdExpertRule FromTokens(long tokens, int topK, int numExperts) =>
        new(null, CoverageReport.DefaultThreshold(tokens, topK, numExperts));

    /// <summary>True when expert <paramref name="expert"/> of <paramref name="layer"/>, which received
    /// <paramref name="routedTokens"/> tokens in the current pass, is cold.</summary>
    public bool IsCold(int layer, int expert, long routedTokens) =>
        _coverage?.IsCold(layer, expert) ?? routedTokens < Threshold;
}
