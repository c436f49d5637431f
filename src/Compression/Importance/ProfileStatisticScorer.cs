using MoECompress.Compression.Calibration;

namespace MoECompress.Compression.Importance;

/// <summary>
/// A scorer that reads one statistic of the calibration profile per expert (no model run) and keeps the highest
/// scores: <see cref="KeptExpertChooser.TopByScore"/> under the request's constraints.
/// </summary>
public abstract class ProfileStatisticScorer : IExpertScorer
{
    /// <inheritdoc />
    public abstract string Name { get; }

    /// <inheritdoc />
    public abstract string Description { get; }

    /// <inheritdoc />
    public bool RequiresActivations => false;

    /// <summary>The score of every expert of one layer (higher = more important).</summary>
    public abstract double[] ScoreLayer(MoELayerStatistics layer);

    /// <inheritdoc />
    public ExpertScores Score(ExpertScoringContext context, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(context);
        var layers = new Dictionary<int, double[]>();
        foreach (var layer in context.Profile.Layers)
        {
            cancellationToken.ThrowIfCancellationRequested();
            layers[layer.Layer] = ScoreLayer(layer);
        }
        return new ExpertScores(Name, layers);
    }

    /// <inheritdoc />
    public IReadOnlyDictionary<int, LayerSelection> SelectKept(ExpertScoringContext context, ExpertScores scores, KeepRequest request,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(scores);
        ArgumentNullException.ThrowIfNull(request);
        var result = new SortedDictionary<int, LayerSelection>();
        foreach (var layer in request.Layers ?? scores.Layers)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var kept = KeptExpertChooser.TopByScore(layer, scores.Of(layer), request.Keep, request.Groups, request.ProtectedIn(layer));
            var rule = request.Groups > 1
                ? $"highest {Name} scores, {request.Keep / request.Groups} per group"
                : $"highest {Name} scores";
            result[layer] = new LayerSelection(layer, kept, rule);
        }
        return result;
    }
}
