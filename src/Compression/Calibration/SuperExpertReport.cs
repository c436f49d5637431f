namespace MoECompress.Compression.Calibration;

/// <summary>
/// Super experts (DESIGN.md §4, after "Unveiling Super Experts in MoE LLMs"): a routed expert is super when its largest
/// |down_proj output| over the calibration tokens is above the 99.5th percentile of that maximum over every routed
/// expert of the model and above a tenth of the model-wide largest value, and it sits in the first 75% of the decoder
/// layers (layer index &lt; 0.75 × layers).
/// </summary>
/// <param name="Percentile995">99.5th percentile (linear interpolation between ranks, numpy's default) of all experts' maxima.</param>
/// <param name="GlobalMax">The largest maximum of any expert.</param>
/// <param name="LayerLimit">Only layers with an index below this value qualify (0.75 × decoder layers).</param>
/// <param name="Experts">The super experts, by layer then expert.</param>
public sealed record SuperExpertReport(double Percentile995, double GlobalMax, double LayerLimit, IReadOnlyList<SuperExpert> Experts)
{
    /// <summary>Percentile of the rule.</summary>
    public const double Percentile = 99.5;
    /// <summary>Fraction of the global maximum an expert's maximum must exceed.</summary>
    public const double GlobalMaxFraction = 0.1;
    /// <summary>Fraction of the decoder layers (from the first) in which super experts are looked for.</summary>
    public const double LayerFraction = 0.75;

    /// <summary>True when expert <paramref name="expert"/> of layer <paramref name="layer"/> is a super expert.</summary>
    public bool IsSuper(int layer, int expert) => Experts.Any(s => s.Layer == layer && s.Expert == expert);

    /// <summary>Applies the rule to per-layer expert maxima.</summary>
    /// <param name="maxAbsOutputs">For each MoE layer (decoder index), the max |down_proj output| of each expert.</param>
    /// <param name="numLayers">Decoder layers of the model (dense layers included).</param>
    public static SuperExpertReport Find(IReadOnlyDictionary<int, IReadOnlyList<double>> maxAbsOutputs, int numLayers)
    {
        var all = maxAbsOutputs.Values.SelectMany(v => v).ToArray();
        var limit = LayerFraction * numLayers;
        if (all.Length == 0) return new SuperExpertReport(0, 0, limit, Array.Empty<SuperExpert>());
        Array.Sort(all);
        var p = PercentileOfSorted(all, Percentile);
        var globalMax = all[^1];
        var found = new List<SuperExpert>();
        foreach (var (layer, maxima) in maxAbsOutputs.OrderBy(kv => kv.Key))
        {
            if (layer >= limit) continue;
            for (var e = 0; e < maxima.Count; e++)
                if (maxima[e] > p && maxima[e] > GlobalMaxFraction * globalMax)
                    found.Add(new SuperExpert(layer, e, maxima[e]));
        }
        return new SuperExpertReport(p, globalMax, limit, found);
    }

    /// <summary>The q-th percentile (0–100) of ascending values, interpolating linearly between ranks (numpy "linear").</summary>
    public static double PercentileOfSorted(IReadOnlyList<double> sorted, double q)
    {
        if (sorted.Count == 0) throw new ArgumentException("no values", nameof(sorted));
        var pos = q / 100.0 * (sorted.Count - 1);
        var lo = (int)Math.Floor(pos);
        var hi = Math.Min(lo + 1, sorted.Count - 1);
        var frac = pos - lo;
        return sorted[lo] + (sorted[hi] - sorted[lo]) * frac;
    }
}
