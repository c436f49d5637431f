using MoECompress.Compression.Calibration;

namespace MoECompress.Compression.Importance;

/// <summary>"frequency": φ_i = n_i / N, the share of calibration tokens whose top-k includes expert i.</summary>
public sealed class FrequencyScorer : ProfileStatisticScorer
{
    /// <summary>The registry name.</summary>
    public const string ScorerName = "frequency";

    /// <inheritdoc />
    public override string Name => ScorerName;

    /// <inheritdoc />
    public override string Description => "selection frequency n_i / N (share of calibration tokens routed to the expert)";

    /// <inheritdoc />
    public override double[] ScoreLayer(MoELayerStatistics layer)
    {
        ArgumentNullException.ThrowIfNull(layer);
        return layer.Frequencies();
    }
}
