namespace MoECompress.Tests.Calibration;

/// <summary>The routing rule of a model family, written out by hand for the brute-force reference.</summary>
internal sealed record BruteForceRouting(bool Sigmoid, bool Renormalize, double ScalingFactor, int Groups, int TopKGroups, bool UseCorrectionBias)
{
    public static readonly BruteForceRouting Mixtral = new(false, true, 1.0, 1, 1, false);
    public static BruteForceRouting DeepSeekV3(double scaling, int groups, int topKGroups) => new(true, true, scaling, groups, topKGroups, true);
}
