namespace MoECompress.Compression.Importance;

/// <summary>
/// Importance scores of a method for every routed expert of every scored MoE layer (higher = more important).
/// </summary>
public sealed class ExpertScores
{
    private readonly SortedDictionary<int, double[]> _layers;

    /// <summary>Creates the record (arrays are copied).</summary>
    /// <param name="method">The scorer's name.</param>
    /// <param name="layers">Layer → one score per expert.</param>
    public ExpertScores(string method, IReadOnlyDictionary<int, double[]> layers)
    {
        ArgumentNullException.ThrowIfNull(method);
        ArgumentNullException.ThrowIfNull(layers);
        Method = method;
        _layers = new SortedDictionary<int, double[]>(layers.ToDictionary(kv => kv.Key, kv => (double[])kv.Value.Clone()));
    }

    /// <summary>The scorer's name.</summary>
    public string Method { get; }

    /// <summary>Scored layers, ascending.</summary>
    public IReadOnlyList<int> Layers => _layers.Keys.ToList();

    /// <summary>The scores of one layer (one per expert).</summary>
    /// <exception cref="KeyNotFoundException">The layer was not scored.</exception>
    public IReadOnlyList<double> Of(int layer) => _layers.TryGetValue(layer, out var s) ? s
        : throw new KeyNotFoundException($"layer {layer} has no {Method} scores (scored layers: {string.Join(", ", _layers.Keys)})");

    /// <summary>True when <paramref name="layer"/> was scored.</summary>
    public bool Has(int layer) => _layers.ContainsKey(layer);

    /// <summary>
    /// One layer's scores made comparable across layers (for global ranking): s_i / Σ_j s_j when every score is
    /// non-negative and the sum is positive; otherwise (scores that can be negative, such as TCESS router logits, whose
    /// level is arbitrary) shifted by the layer's minimum first, (s_i − min) / Σ_j (s_j − min); all equal scores give
    /// 1/E each.
    /// </summary>
    public double[] Normalized(int layer) => Normalize(Of(layer));

    /// <summary>The normalisation of <see cref="Normalized"/> applied to any score vector.</summary>
    public static double[] Normalize(IReadOnlyList<double> scores)
    {
        ArgumentNullException.ThrowIfNull(scores);
        var n = scores.Count;
        if (n == 0) return [];
        var min = scores.Min();
        var shift = min < 0 ? min : 0.0;
        var sum = scores.Sum(s => s - shift);
        if (!(sum > 0) || double.IsInfinity(sum))
            return Enumerable.Repeat(1.0 / n, n).ToArray();
        return scores.Select(s => (s - shift) / sum).ToArray();
    }
}
