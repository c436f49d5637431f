namespace MoECompress.Compression.Pruning;

/// <summary>One MoE layer of a <see cref="ProfileComparisonReport"/>.</summary>
/// <param name="Layer">Decoder layer index.</param>
/// <param name="TopExperts">Profile name → its top-keep experts (ascending), in the order the profiles were given.</param>
/// <param name="Pairs">Every pair of profiles, in input order.</param>
/// <param name="Shared">Experts in every profile's top-keep set.</param>
public sealed record LayerOverlap(int Layer, IReadOnlyList<KeyValuePair<string, IReadOnlyList<int>>> TopExperts,
    IReadOnlyList<ProfileOverlap> Pairs, IReadOnlyList<int> Shared);
