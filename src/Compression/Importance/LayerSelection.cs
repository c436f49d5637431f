namespace MoECompress.Compression.Importance;

/// <summary>Which experts one MoE layer keeps, and how they were chosen.</summary>
/// <param name="Layer">Layer index (decoder layers; MTP layers numbered after them).</param>
/// <param name="Kept">Original indices of the kept experts, ascending (new index = position in this list).</param>
/// <param name="Rule">How they were chosen, in words (e.g. "exhaustive search over 28 subsets").</param>
/// <param name="OutputError">NAEE: Σ‖block output with only the kept experts − original block output‖² over the
/// calibration tokens; null for other methods.</param>
public sealed record LayerSelection(int Layer, IReadOnlyList<int> Kept, string Rule, double? OutputError = null);
