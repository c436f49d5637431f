namespace MoECompress.Compression.Calibration;

/// <summary>
/// How well the calibration tokens covered the routed experts: the threshold used and every expert below it.
/// </summary>
/// <param name="ColdThreshold">An expert with fewer routed tokens than this is cold.</param>
/// <param name="ColdExperts">The cold experts, by layer then expert.</param>
/// <param name="UnusedExperts">How many experts received no token at all (all of them are also cold when the threshold is positive).</param>
public sealed record CoverageReport(double ColdThreshold, IReadOnlyList<ColdExpert> ColdExperts, int UnusedExperts)
{
    /// <summary>True when expert <paramref name="expert"/> of layer <paramref name="layer"/> is cold.</summary>
    public bool IsCold(int layer, int expert) => ColdExperts.Any(c => c.Layer == layer && c.Expert == expert);

    /// <summary>The default threshold: max(16, 0.1 × the tokens an expert would get under uniform routing, N·k/E).</summary>
    public static double DefaultThreshold(long tokens, int topK, int numExperts) =>
        Math.Max(16.0, 0.1 * tokens * topK / Math.Max(1, numExperts));
}
