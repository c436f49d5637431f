using MoECompress.Compression.Calibration;

namespace MoECompress.Compression.Importance;

/// <summary>
/// "reap" (REAP, router-weighted expert activation pruning): S_i = (1/n_i) Σ_{t: i ∈ top-k(t)} g_{t,i}·‖f_i(x_t)‖₂, the mean
/// gate-weighted norm of the expert's output over the tokens routed to it (0 when it receives none).
/// </summary>
public sealed class ReapScorer : ProfileStatisticScorer
{
    /// <summary>The registry name.</summary>
    public const string ScorerName = "reap";

    /// <inheritdoc />
    public override string Name => ScorerName;

    /// <inheritdoc />
    public override string Description => "REAP saliency: mean of gate weight x expert output norm over the tokens routed to the expert";

    /// <inheritdoc />
    public override double[] ScoreLayer(MoELayerStatistics layer)
    {
        ArgumentNullException.ThrowIfNull(layer);
        return (double[])layer.Reap.Clone();
    }
}
