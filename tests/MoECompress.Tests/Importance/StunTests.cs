using MoECompress.Compression.Importance;

namespace MoECompress.Tests.Importance;

/// <summary>STUN's co-selection clustering on hand-made statistics (similarities worked out in the comments).</summary>
public sealed class StunTests
{
    // Six experts in three co-selected pairs. n = [10, 4, 3, 9, 7, 7];
    // s01 = 4/√40 = 0.632, s23 = 3/√27 = 0.577, s45 = 6/√49 = 0.857, s03 = 1/√90 = 0.105, s04 = 1/√70 = 0.120, others 0.
    private static readonly long[] PairCounts = [10, 4, 3, 9, 7, 7];

    private static long PairCoselection(int i, int j) => (i, j) switch
    {
        (0, 1) => 4, (2, 3) => 3, (4, 5) => 6, (0, 3) => 1, (0, 4) => 1, _ => 0,
    };

    private static ExpertScoringContext PairContext(long[]? counts = null) => new()
    {
        Profile = HandMadeStatistics.Profile([HandMadeStatistics.Layer(0, counts ?? PairCounts, 20, coselection: PairCoselection)], 1),
    };

    private static IReadOnlyList<int> Keep(ExpertScoringContext context, int keep, int groups = 1, params int[] protectedExperts)
    {
        var scorer = new StunScorer();
        return scorer.SelectKept(context, scorer.Score(context), new KeepRequest
        {
            Keep = keep, Groups = groups,
            Protected = new Dictionary<int, IReadOnlyCollection<int>> { [0] = protectedExperts },
        })[0].Kept;
    }

    [Fact]
    public void SimilarityIsCoselectionOverTheGeometricMeanOfCounts()
    {
        var s = CoselectionClustering.Similarity(PairContext().Profile.Layer(0));
        Assert.Equal(4 / Math.Sqrt(40), s[0, 1], 12);
        Assert.Equal(s[0, 1], s[1, 0], 12);
        Assert.Equal(6 / 7.0, s[4, 5], 12);
        Assert.Equal(1 / Math.Sqrt(90), s[0, 3], 12);
        Assert.Equal(0, s[1, 2]);
        Assert.Equal(1, s[2, 2]);
    }

    [Fact]
    public void OneRepresentativePerClusterTheMostFrequent()
    {
        // Merges (4,5), (0,1), (2,3); representatives 0 (10 > 4), 3 (9 > 3), 4 (7 = 7: lower index).
        Assert.Equal([0, 3, 4], Keep(PairContext(), 3));
        var clusters = CoselectionClustering.Cluster(PairContext().Profile.Layer(0), [0, 1, 2, 3, 4, 5], 3, [], out var dropped);
        Assert.Empty(dropped);
        Assert.Equal([[0, 1], [2, 3], [4, 5]], clusters.Select(c => c.Members.ToArray()).ToArray());
        Assert.Equal([0, 3, 4], clusters.Select(c => c.Representative));
    }

    [Fact]
    public void ScoresFollowTheRemovalOrderSoTheTopScoresAreTheRepresentatives()
    {
        // After the three pair merges: sim({0,1},{4,5}) = (0.120 + 0 + 0 + 0)/4 = 0.030 > sim({0,1},{2,3}) = 0.105/4 = 0.026,
        // so {0,1} merges with {4,5} (4 loses to 0), then with {2,3} (3 loses to 0). Removal order 5, 1, 2, 4, 3, 0.
        var layer = PairContext().Profile.Layer(0);
        Assert.Equal([5, 1, 2, 4, 3, 0], CoselectionClustering.RemovalOrder(layer));
        Assert.Equal([6 / 6.0, 2 / 6.0, 3 / 6.0, 5 / 6.0, 4 / 6.0, 1 / 6.0], StunScorer.ScoreLayer(layer));
        for (var keep = 1; keep <= 6; keep++)
        {
            var scores = StunScorer.ScoreLayer(layer);
            var top = Enumerable.Range(0, 6).OrderByDescending(i => scores[i]).Take(keep).Order();
            Assert.Equal(top, Keep(PairContext(), keep));
        }
    }

    [Fact]
    public void AverageLinkageNotSingleLinkage()
    {
        // n = [100, 144, 121, 100]; s01 = 108/120 = 0.9, s12 = 99/132 = 0.75, s23 = 55/110 = 0.5, others 0.
        // After merging (0,1): average linkage sim({0,1}, 2) = (0 + 0.75)/2 = 0.375 < s23 = 0.5, so (2,3) merge: reps 1 and 2.
        // (Single linkage would join 2 to {0,1} and keep 1 and 3.)
        var context = new ExpertScoringContext
        {
            Profile = HandMadeStatistics.Profile([HandMadeStatistics.Layer(0, [100, 144, 121, 100], 200,
                coselection: (i, j) => (i, j) switch { (0, 1) => 108, (1, 2) => 99, (2, 3) => 55, _ => 0 })], 1),
        };
        Assert.Equal([1, 2], Keep(context, 2));
    }

    [Fact]
    public void ProtectedExpertsRepresentTheirClusterAndAreNeverMergedTogether()
    {
        Assert.Equal([1, 3, 4], Keep(PairContext(), 3, 1, 1));
        // 4 and 5 may not merge: (0,1), (2,3), then {0,1} joins 4 (sim 0.060), the most similar allowed pair; 4 represents it.
        Assert.Equal([3, 4, 5], Keep(PairContext(), 3, 1, 4, 5));
    }

    [Fact]
    public void NeverSelectedExpertsGoFirst()
    {
        long[] counts = [10, 4, 3, 9, 7, 0];
        var selection = new StunScorer().SelectKept(PairContext(counts), new StunScorer().Score(PairContext(counts)), new KeepRequest { Keep = 5 })[0];
        Assert.Equal([0, 1, 2, 3, 4], selection.Kept);
        Assert.Contains("never-selected", selection.Rule);
        Assert.Equal(5, CoselectionClustering.RemovalOrder(PairContext(counts).Profile.Layer(0))[0]);
    }

    [Fact]
    public void GroupsAreClusteredSeparately()
    {
        // Groups {0,1,2} and {3,4,5}, two clusters each: (0,1) merge in group 0, (4,5) in group 1.
        Assert.Equal([0, 2, 3, 4], Keep(PairContext(), 4, 2));
    }
}
