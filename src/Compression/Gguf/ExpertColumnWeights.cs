using MoECompress.Formats.Families;

namespace MoECompress.Compression.Gguf;

/// <summary>
/// Per-column weights of a routed expert's projection from the calibration importance: Σ x² of the expert input for
/// gate/up, Σ h² of the down_proj input. For quantization (<see cref="For"/>) the weights are floored at 1e-3 of their
/// mean so that columns no token exercised still get a sensible scale; experts with fewer than the minimum routed
/// tokens (and every expert when no importance was collected) get null: unweighted quantization.
/// </summary>
public sealed class ExpertColumnWeights(GgufImportanceObserver? importance, long minTokens)
{
    /// <summary>Quantization weights of one expert's projection, or null for unweighted.</summary>
    public float[]? For(int layer, int expert, ExpertProjection projection)
    {
        var imp = importance?.Get(layer, expert);
        if (imp is null || imp.Tokens < minTokens) return null;
        var raw = projection == ExpertProjection.Down ? imp.IntermediateSquares : imp.InputSquares;
        var floor = raw.Average() * 1e-3 + 1e-30;
        return raw.Select(v => (float)(v + floor)).ToArray();
    }

    /// <summary>Weights of the error measure Σ imp·(w − ŵ)² (ones without importance; the raw sums otherwise, zero for
    /// an expert no token reached).</summary>
    public double[] ErrorWeights(int layer, int expert, ExpertProjection projection, int columns)
    {
        if (importance is null) return Enumerable.Repeat(1.0, columns).ToArray();
        var imp = importance.Get(layer, expert);
        if (imp is null) return new double[columns];
        return projection == ExpertProjection.Down ? imp.IntermediateSquares : imp.InputSquares;
    }
}
