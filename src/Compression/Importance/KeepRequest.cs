namespace MoECompress.Compression.Importance;

/// <summary>
/// What <see cref="IExpertScorer.SelectKept"/> must produce: <see cref="Keep"/> experts in every listed layer, every
/// protected expert among them, and with <see cref="Groups"/> &gt; 1 (DeepSeek group-limited routing; group of expert i
/// = i / (E / Groups)) exactly Keep / Groups experts in every group.
/// </summary>
public sealed record KeepRequest
{
    /// <summary>E': experts each layer keeps.</summary>
    public required int Keep { get; init; }

    /// <summary>Expert groups of equal size that must keep the same count (1 = no groups).</summary>
    public int Groups { get; init; } = 1;

    /// <summary>Layer → experts that must be kept (super experts); null or missing layers: none.</summary>
    public IReadOnlyDictionary<int, IReadOnlyCollection<int>>? Protected { get; init; }

    /// <summary>The layers to decide (decoder layer indices of the profile); null: every layer of the profile.</summary>
    public IReadOnlyList<int>? Layers { get; init; }

    /// <summary>The protected experts of <paramref name="layer"/> (empty when none).</summary>
    public IReadOnlyCollection<int> ProtectedIn(int layer) =>
        Protected is not null && Protected.TryGetValue(layer, out var p) ? p : Array.Empty<int>();
}
