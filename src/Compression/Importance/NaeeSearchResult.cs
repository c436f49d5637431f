namespace MoECompress.Compression.Importance;

/// <summary>The outcome of <see cref="NaeeSubsetSearch.Search"/> for one layer.</summary>
/// <param name="Removed">Original indices of the experts to remove, ascending.</param>
/// <param name="Error">The error of that removal (what the search minimised).</param>
/// <param name="Exhaustive">True when every admissible subset was evaluated; false for the greedy search.</param>
/// <param name="Subsets">Admissible subsets (saturates at <see cref="long.MaxValue"/>).</param>
/// <param name="Evaluated">Error evaluations made.</param>
public sealed record NaeeSearchResult(IReadOnlyList<int> Removed, double Error, bool Exhaustive, long Subsets, long Evaluated);
