namespace MoECompress.Compression.Importance;

/// <summary>Options some scorers take.</summary>
public sealed record ExpertScorerOptions
{
    /// <summary>NAEE: largest number of subsets per layer searched exhaustively before the greedy search takes over.</summary>
    public long NaeeExhaustiveLimit { get; init; } = NaeeScorer.DefaultExhaustiveLimit;
}
