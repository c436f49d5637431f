using MoECompress.Compression.Calibration;

namespace MoECompress.Compression.Importance;

/// <summary>
/// "routing-weight": w_i = Σ_{t: i ∈ top-k(t)} p_{t,i}, the router probability mass the expert receives from the tokens
/// that select it (before top-k renormalisation; MC-MoE's activation weight).
/// </summary>
public sealed class RoutingWeightScorer : ProfileStatisticScorer
{
    /// <summary>The registry name.</summary>
    public const string ScorerName = "routing-weight";

    /// <inheritdoc />
    public override string Name => ScorerName;

    /// <inheritdoc />
    public override string Description => "routing-weight mass: sum of the router probability over the tokens that select the expert";

    /// <inheritdoc />
    public override double[] ScoreLayer(MoELayerStatistics layer)
    {
        ArgumentNullException.ThrowIfNull(layer);
        return (double[])layer.RoutingWeightMass.Clone();
    }
}
