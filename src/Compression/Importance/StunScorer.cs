using MoECompress.Compression.Calibration;

namespace MoECompress.Compression.Importance;

/// <summary>
/// "stun" (after STUN, Lee et al. 2024): clusters each layer's experts by co-selection similarity
/// C_ij / √(n_i·n_j) with average-linkage agglomerative clustering into E' clusters and keeps one representative per
/// cluster, the most frequent member (exact rule: <see cref="CoselectionClustering"/>). With expert groups each group
/// is clustered into E'/groups clusters of its own; protected experts are always representatives.
/// The score of expert i is p_i / E, where p_i is its 1-based position in <see cref="CoselectionClustering.RemovalOrder"/>
/// (the final representative scores 1): the experts with the E' highest scores are exactly the representatives of E'
/// clusters when nothing is protected and there are no groups.
/// </summary>
public sealed class StunScorer : IExpertScorer
{
    /// <summary>The registry name.</summary>
    public const string ScorerName = "stun";

    /// <inheritdoc />
    public string Name => ScorerName;

    /// <inheritdoc />
    public string Description =>
        "STUN: average-linkage clustering of experts by co-selection similarity, one representative (the most frequent) kept per cluster";

    /// <inheritdoc />
    public bool RequiresActivations => false;

    /// <summary>The scores of one layer (see the class remarks).</summary>
    public static double[] ScoreLayer(MoELayerStatistics layer)
    {
        ArgumentNullException.ThrowIfNull(layer);
        var order = CoselectionClustering.RemovalOrder(layer);
        var scores = new double[layer.NumExperts];
        for (var p = 0; p < order.Count; p++) scores[order[p]] = (p + 1.0) / layer.NumExperts;
        return scores;
    }

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
        ArgumentNullException.ThrowIfNull(request);
        var result = new SortedDictionary<int, LayerSelection>();
        foreach (var layerIndex in request.Layers ?? context.Profile.Layers.Select(l => l.Layer).ToList())
        {
            cancellationToken.ThrowIfCancellationRequested();
            var layer = context.Profile.Layer(layerIndex);
            var e = layer.NumExperts;
            var groups = Math.Max(1, request.Groups);
            var protectedExperts = request.ProtectedIn(layerIndex);
            KeptExpertChooser.CheckFeasible(layerIndex, e, request.Keep, groups, protectedExperts);
            var kept = new List<int>();
            var droppedUnused = 0;
            var clusterDescriptions = new List<string>();
            for (var g = 0; g < groups; g++)
            {
                var members = Enumerable.Range(0, e).Where(i => KeptExpertChooser.GroupOf(i, e, groups) == g).ToList();
                var clusters = CoselectionClustering.Cluster(layer, members, request.Keep / groups, protectedExperts, out var dropped);
                droppedUnused += dropped.Count;
                kept.AddRange(clusters.Select(c => c.Representative));
                clusterDescriptions.AddRange(clusters.Where(c => c.Members.Count > 1)
                    .Select(c => $"{c.Representative}<-{{{string.Join(",", c.Members.Where(m => m != c.Representative))}}}"));
            }
            kept.Sort();
            var rule = $"{request.Keep} co-selection clusters{(groups > 1 ? $" ({request.Keep / groups} per group)" : "")}, most frequent member kept";
            if (droppedUnused > 0) rule += $"; {droppedUnused} never-selected expert(s) removed before clustering";
            if (clusterDescriptions.Count > 0) rule += $"; merged: {string.Join(" ", clusterDescriptions)}";
            result[layerIndex] = new LayerSelection(layerIndex, kept, rule);
        }
        return result;
    }
}
