namespace MoECompress.Compression.Pruning;

/// <summary>How much two profiles agree on one layer's (or, averaged, every layer's) most important experts.</summary>
/// <param name="First">Name of the first profile.</param>
/// <param name="Second">Name of the second profile.</param>
/// <param name="Jaccard">|A ∩ B| / |A ∪ B| of the two top-keep sets (mean over layers in <see cref="ProfileComparisonReport.MeanOverlaps"/>).</param>
/// <param name="Common">|A ∩ B| (total over layers in <see cref="ProfileComparisonReport.MeanOverlaps"/>).</param>
public sealed record ProfileOverlap(string First, string Second, double Jaccard, int Common);
