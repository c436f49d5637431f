using MoECompress.Formats.Errors;

namespace MoECompress.Compression.Importance;

/// <summary>The expert scorers, registered in one place and chosen by name.</summary>
public static class ExpertScorers
{
    /// <summary>Every scorer name, in the order help text lists them.</summary>
    public static IReadOnlyList<string> Names { get; } =
    [
        FrequencyScorer.ScorerName, RoutingWeightScorer.ScorerName, TcessScorer.ScorerName, ReapScorer.ScorerName,
        NaeeScorer.ScorerName, StunScorer.ScorerName,
    ];

    /// <summary>
    /// The scorer called <paramref name="name"/> (case-insensitive). Throws <see cref="MoeCompressException"/>(Usage)
    /// listing the known names when there is none.
    /// </summary>
    public static IExpertScorer Get(string name, ExpertScorerOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(name);
        options ??= new ExpertScorerOptions();
        return name.Trim().ToLowerInvariant() switch
        {
            FrequencyScorer.ScorerName => new FrequencyScorer(),
            RoutingWeightScorer.ScorerName => new RoutingWeightScorer(),
            TcessScorer.ScorerName => new TcessScorer(),
            ReapScorer.ScorerName => new ReapScorer(),
            NaeeScorer.ScorerName => new NaeeScorer(options.NaeeExhaustiveLimit),
            StunScorer.ScorerName => new StunScorer(),
            _ => throw new MoeCompressException(ErrorKind.Usage,
                $"--method '{name}': unknown expert scorer; known scorers: {string.Join(", ", Names)}"),
        };
    }
}
