namespace MoECompress.Compression.Importance;

/// <summary>
/// An expert-importance method, chosen by name through <see cref="ExpertScorers.Get"/>: scores every routed expert of
/// every MoE layer of a calibration profile (higher = more important) and decides which experts a layer keeps for a
/// target count. For the statistic scorers (frequency, routing-weight, tcess, reap) the decision is "keep the highest
/// scores"; NAEE searches subsets on calibration activations and STUN keeps one representative per cluster, so their
/// decision is not always the top of their scores.
/// </summary>
public interface IExpertScorer
{
    /// <summary>The name the scorer is chosen by ("frequency", "reap", "naee", ...).</summary>
    string Name { get; }

    /// <summary>One line saying what the score is, for reports and help text.</summary>
    string Description { get; }

    /// <summary>
    /// True when the scorer runs the model on calibration tokens (it then needs
    /// <see cref="ExpertScoringContext.Checkpoint"/> and <see cref="ExpertScoringContext.Tokens"/>); false when the
    /// profile's statistics are enough.
    /// </summary>
    bool RequiresActivations { get; }

    /// <summary>Scores every routed expert of every MoE layer of <see cref="ExpertScoringContext.Profile"/>.</summary>
    /// <exception cref="Formats.Errors.MoeCompressException">Usage: the context lacks what the scorer needs.</exception>
    ExpertScores Score(ExpertScoringContext context, CancellationToken cancellationToken = default);

    /// <summary>
    /// Chooses the experts to keep in each layer of <paramref name="request"/>: exactly <see cref="KeepRequest.Keep"/>
    /// of them, every protected expert among them, and with groups the same number in every group.
    /// </summary>
    /// <param name="context">The profile (and for NAEE the model and tokens).</param>
    /// <param name="scores">This scorer's scores of the same profile (from <see cref="Score"/>).</param>
    /// <param name="request">The target count and the constraints.</param>
    /// <param name="cancellationToken">Cancels between layers and subsets.</param>
    /// <returns>Layer → decision, for every layer of the request.</returns>
    /// <exception cref="Formats.Errors.MoeCompressException">Infeasible: the constraints cannot be met.</exception>
    IReadOnlyDictionary<int, LayerSelection> SelectKept(ExpertScoringContext context, ExpertScores scores, KeepRequest request,
        CancellationToken cancellationToken = default);
}
