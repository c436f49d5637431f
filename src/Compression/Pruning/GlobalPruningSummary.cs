namespace MoECompress.Compression.Pruning;

/// <summary>
/// What global pruning chose and what loadability cost: the global threshold's count per layer k_l, the common count
/// E' = the smallest feasible count ≥ max_l k_l that every layer gets, and the reduction achieved vs requested.
/// </summary>
/// <param name="RequestedRemoved">Experts the request removes over all decoder MoE layers.</param>
/// <param name="GlobalRemoved">Experts the global threshold removed (less when layers hit their minimum).</param>
/// <param name="TotalExperts">Routed experts over all decoder MoE layers before pruning.</param>
/// <param name="LayerKeep">Decoder MoE layer → k_l.</param>
/// <param name="OutputExperts">E'.</param>
/// <param name="Normalization">How scores were made comparable across layers.</param>
public sealed record GlobalPruningSummary(
    int RequestedRemoved,
    int GlobalRemoved,
    int TotalExperts,
    IReadOnlyDictionary<int, int> LayerKeep,
    int OutputExperts,
    string Normalization)
{
    /// <summary>Fraction of routed experts the request asked to remove.</summary>
    public double RequestedReduction => TotalExperts == 0 ? 0 : (double)RequestedRemoved / TotalExperts;

    /// <summary>Fraction the global threshold alone would remove (not loadable by stock runtimes when k_l differ).</summary>
    public double GlobalReduction => TotalExperts == 0 ? 0 : (double)GlobalRemoved / TotalExperts;

    /// <summary>Fraction actually removed after equalising every layer to E'.</summary>
    public double AchievedReduction => TotalExperts == 0 || LayerKeep.Count == 0 ? 0
        : 1.0 - (double)OutputExperts * LayerKeep.Count / TotalExperts;

    /// <summary>Experts kept only to equalise the counts, over all layers: Σ_l (E' − k_l).</summary>
    public int ExtraKept => LayerKeep.Values.Sum(k => OutputExperts - k);
}
