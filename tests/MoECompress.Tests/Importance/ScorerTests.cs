using MoECompress.Compression.Importance;
using MoECompress.Formats.Errors;

namespace MoECompress.Tests.Importance;

/// <summary>The profile-statistic scorers, the registry and score normalisation on hand-made statistics.</summary>
public sealed class ScorerTests
{
    // Layer 0: N = 10 tokens, top-2, so Σ n_i = 20.
    private static readonly long[] Counts0 = [6, 2, 8, 4];
    private static readonly double[] Mass0 = [3.5, 0.5, 5.0, 1.0];
    private static readonly double[] Tcess0 = [0.9, -0.4, 1.7, 0.1];
    private static readonly double[] Reap0 = [0.25, 0.75, 0.5, 0.125];

    private static ExpertScoringContext Context() => new()
    {
        Profile = HandMadeStatistics.Profile(
        [
            HandMadeStatistics.Layer(0, Counts0, 10, routingMass: Mass0, tcess: Tcess0, reap: Reap0),
            HandMadeStatistics.Layer(1, [5, 5, 5, 5], 10),
        ], numLayers: 2),
    };

    [Fact]
    public void FrequencyIsSelectionCountOverTokens()
    {
        var scores = new FrequencyScorer().Score(Context());
        Assert.Equal([0.6, 0.2, 0.8, 0.4], scores.Of(0));
        Assert.Equal([0.5, 0.5, 0.5, 0.5], scores.Of(1));
        Assert.Equal([0, 1], scores.Layers);
    }

    [Fact]
    public void StatisticScorersReadTheirProfileColumn()
    {
        var context = Context();
        Assert.Equal(Mass0, new RoutingWeightScorer().Score(context).Of(0));
        Assert.Equal(Tcess0, new TcessScorer().Score(context).Of(0));
        Assert.Equal(Reap0, new ReapScorer().Score(context).Of(0));
    }

    [Theory]
    [InlineData("frequency", new[] { 0, 2 })]      // 0.6, 0.8
    [InlineData("routing-weight", new[] { 0, 2 })] // 3.5, 5.0
    [InlineData("tcess", new[] { 0, 2 })]          // 0.9, 1.7
    [InlineData("reap", new[] { 1, 2 })]           // 0.75, 0.5
    public void SelectKeptKeepsTheHighestScores(string method, int[] expected)
    {
        var scorer = ExpertScorers.Get(method);
        var context = Context();
        var kept = scorer.SelectKept(context, scorer.Score(context), new KeepRequest { Keep = 2 });
        Assert.Equal(expected, kept[0].Kept);
        Assert.Equal(2, kept[1].Kept.Count);
        Assert.Equal([0, 1], kept[1].Kept); // all equal: ties keep the lower index
    }

    [Fact]
    public void ProtectedExpertsAreKeptEvenWithTheLowestScore()
    {
        var scorer = new FrequencyScorer();
        var context = Context();
        var kept = scorer.SelectKept(context, scorer.Score(context),
            new KeepRequest { Keep = 2, Protected = new Dictionary<int, IReadOnlyCollection<int>> { [0] = [1] } });
        Assert.Equal([1, 2], kept[0].Kept);
    }

    [Fact]
    public void RegistryFindsEveryNameAndListsThemForAnUnknownOne()
    {
        foreach (var name in ExpertScorers.Names)
            Assert.Equal(name, ExpertScorers.Get(name).Name);
        Assert.Equal("reap", ExpertScorers.Get(" REAP ").Name);
        Assert.True(ExpertScorers.Get("naee").RequiresActivations);
        Assert.Equal(7, ((NaeeScorer)ExpertScorers.Get("naee", new ExpertScorerOptions { NaeeExhaustiveLimit = 7 })).ExhaustiveLimit);
        var ex = Assert.Throws<MoeCompressException>(() => ExpertScorers.Get("magnitude"));
        Assert.Equal(ErrorKind.Usage, ex.Kind);
        Assert.Contains("'magnitude'", ex.Message);
        foreach (var name in new[] { "frequency", "routing-weight", "tcess", "reap", "naee", "stun" })
            Assert.Contains(name, ex.Message);
    }

    [Fact]
    public void NormalisationDividesBySumAndShiftsNegativeScores()
    {
        Assert.Equal([0.25, 0.75], ExpertScores.Normalize([1.0, 3.0]));
        Assert.Equal([0.0, 0.25, 0.75], ExpertScores.Normalize([-1.0, 0.0, 2.0])); // shifted by −1: [0, 1, 3] / 4
        Assert.Equal([0.5, 0.5], ExpertScores.Normalize([0.0, 0.0]));
        var tcess = new TcessScorer().Score(Context());
        var n = tcess.Normalized(0);
        Assert.Equal(1.0, n.Sum(), 12);
        Assert.Equal(0.0, n[1]);
        Assert.Equal((1.7 + 0.4) / (1.3 + 0 + 2.1 + 0.5), n[2], 12);
    }

    [Fact]
    public void NaeeWithoutTheModelIsAUsageError()
    {
        var scorer = new NaeeScorer();
        var ex = Assert.Throws<MoeCompressException>(() => scorer.Score(Context()));
        Assert.Equal(ErrorKind.Usage, ex.Kind);
        Assert.Contains("naee", ex.Message);
    }
}
