namespace MoECompress.Compression.Pruning;

/// <summary>One routed expert in a pruning report.</summary>
/// <param name="Original">Index in the input model.</param>
/// <param name="New">Index in the output model, or null when the expert was removed.</param>
/// <param name="Score">The method's score (higher = more important).</param>
/// <param name="Protected">A super expert kept because it is protected.</param>
/// <param name="EqualisationExtra">Global pruning: removed by the global threshold but kept so that every layer has the same count.</param>
public sealed record PrunedExpert(int Original, int? New, double Score, bool Protected = false, bool EqualisationExtra = false);
