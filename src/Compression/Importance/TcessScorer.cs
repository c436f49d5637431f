using MoECompress.Compression.Calibration;

namespace MoECompress.Compression.Importance;

/// <summary>
/// "tcess" (PreMoe): TCESS_i = (1/N) Σ_t z_{t,i}·[i ∈ top-k(t)], the mean router logit an expert receives from the tokens
/// that select it (0 for the others). PreMoe keeps the experts with the largest TCESS for a task; with a profile
/// calibrated on one task's text this is task-adaptive pruning.
/// </summary>
public sealed class TcessScorer : ProfileStatisticScorer
{
    /// <summary>The registry name.</summary>
    public const string ScorerName = "tcess";

    /// <inheritdoc />
    public override string Name => ScorerName;

    /// <inheritdoc />
    public override string Description => "PreMoe TCESS: mean router logit of the expert over the tokens that select it (0 elsewhere)";

    /// <inheritdoc />
    public override double[] ScoreLayer(MoELayerStatistics layer)
    {
        ArgumentNullException.ThrowIfNull(layer);
        return (double[])layer.Tcess.Clone();
    }
}
