using MoECompress.Compression.Calibration;
using MoECompress.Formats.Families;

namespace MoECompress.Tests.Importance;

/// <summary>Calibration statistics written by hand, for checking scorers and planners against hand-computed results.</summary>
internal static class HandMadeStatistics
{
    /// <summary>
    /// One layer's statistics: selection counts n_i (and routed tokens = n_i), N tokens, and optional arrays; what is
    /// not given is zero (max |output| is 1 for every expert, so no super expert appears unless asked for).
    /// </summary>
    public static MoELayerStatistics Layer(int layer, long[] counts, long tokens, int topK = 2, int hidden = 4, int intermediate = 4,
        double[]? routingMass = null, double[]? tcess = null, double[]? reap = null, double[]? maxAbs = null,
        Func<int, int, long>? coselection = null)
    {
        var e = counts.Length;
        var co = new long[e * e];
        for (var i = 0; i < e; i++)
            for (var j = 0; j < e; j++)
                co[i * e + j] = i == j ? counts[i] : coselection?.Invoke(Math.Min(i, j), Math.Max(i, j)) ?? 0;
        return new MoELayerStatistics(layer, e, topK, hidden, intermediate, tokens, (long[])counts.Clone(), (long[])counts.Clone(),
            routingMass ?? new double[e], new double[e], tcess ?? new double[e], reap ?? new double[e],
            maxAbs ?? Enumerable.Repeat(1.0, e).ToArray(), co, new float[e * hidden], (float[]?)null);
    }

    /// <summary>A profile over the given layers (decoder count <paramref name="numLayers"/>), optionally with data provenance.</summary>
    public static CalibrationProfile Profile(IReadOnlyList<MoELayerStatistics> layers, int numLayers, string? dataFile = null, string family = "mixtral")
    {
        var first = layers[0];
        var model = new CalibrationModelInfo
        {
            Family = family, Architecture = "MixtralForCausalLM", NumLayers = numLayers, NumExperts = first.NumExperts,
            TopK = first.TopK, HiddenSize = first.HiddenSize, ExpertIntermediateSize = first.IntermediateSize,
        };
        var data = dataFile is null ? null : new CalibrationDataInfo
        {
            Files = [dataFile], Sequences = 4, SeqLen = 250, Description = $"4 sequences of 250 tokens from {Path.GetFileName(dataFile)}",
        };
        return CalibrationProfile.Create(model, data, new CalibrationCollectorOptions(), layers);
    }

    /// <summary>A profile shaped like <paramref name="moe"/> (its MoE layers, E, top-k, H, I) with per-layer counts from <paramref name="counts"/>.</summary>
    public static CalibrationProfile ProfileFor(MoEConfig moe, Func<int, long[]> counts, long tokens, string? dataFile = null,
        Func<int, double[]>? maxAbs = null)
    {
        var layers = moe.MoELayerIndices().Select(l =>
        {
            var c = counts(l);
            if (c.Length != moe.NumExperts) throw new ArgumentException($"layer {l}: {c.Length} counts for {moe.NumExperts} experts");
            return Layer(l, c, tokens, moe.TopK, moe.HiddenSize, moe.ExpertIntermediateSize, maxAbs: maxAbs?.Invoke(l));
        }).ToList();
        var model = CalibrationModelInfo.From(moe);
        var data = dataFile is null ? null : new CalibrationDataInfo
        {
            Files = [dataFile], Sequences = 4, SeqLen = 250, Description = $"4 sequences of 250 tokens from {Path.GetFileName(dataFile)}",
        };
        return CalibrationProfile.Create(model, data, new CalibrationCollectorOptions(), layers);
    }
}
