using MoECompress.Compression.Importance;
using MoECompress.Formats.Errors;

namespace MoECompress.Tests.Importance;

/// <summary>NAEE's subset search with hand-written error functions.</summary>
public sealed class NaeeSubsetSearchTests
{
    // Removing expert 0 with anything else is costly; alone it is the cheapest. Greedy removes 0 first and pays 10;
    // the best pair is {1, 2} at 3.
    private static double Trap(IReadOnlyList<int> removed) => removed.Count switch
    {
        1 => new[] { 1.0, 2.0, 2.0, 5.0 }[removed[0]],
        2 when removed.Contains(0) => 10,
        2 when removed.SequenceEqual([1, 2]) => 3,
        2 => 7 + removed.Sum(),
        _ => throw new InvalidOperationException("unexpected subset size"),
    };

    [Fact]
    public void ExhaustiveFindsTheBestSubset()
    {
        var calls = 0;
        var result = NaeeSubsetSearch.Search(4, 2, 1, [], 5000, r => { calls++; return Trap(r); });
        Assert.True(result.Exhaustive);
        Assert.Equal([1, 2], result.Removed);
        Assert.Equal(3, result.Error);
        Assert.Equal(6, result.Subsets);
        Assert.Equal(6, result.Evaluated);
        Assert.Equal(6, calls);
    }

    [Fact]
    public void GreedyIsUsedBeyondTheLimit()
    {
        var result = NaeeSubsetSearch.Search(4, 2, 1, [], 5, Trap);
        Assert.False(result.Exhaustive);
        Assert.Equal([0, 1], result.Removed); // 0 first (error 1), then the first of equal pairs {0,x} = 10
        Assert.Equal(10, result.Error);
        Assert.Equal(4 + 3, result.Evaluated);
    }

    [Fact]
    public void GroupsLoseTheSameNumberAndProtectedExpertsStay()
    {
        double[] w = [1, 2, 5, 0.5];
        double Sum(IReadOnlyList<int> r) => r.Sum(i => w[i]);
        var grouped = NaeeSubsetSearch.Search(4, 2, 2, [], 5000, Sum);
        Assert.Equal([0, 3], grouped.Removed); // one of {0,1}, one of {2,3}
        Assert.Equal(4, grouped.Subsets);
        var greedy = NaeeSubsetSearch.Search(4, 2, 2, [], 0, Sum);
        Assert.Equal([0, 3], greedy.Removed);
        var guarded = NaeeSubsetSearch.Search(4, 2, 1, [3], 5000, Sum);
        Assert.Equal([0, 1], guarded.Removed);
        Assert.Equal(3, guarded.Subsets);
    }

    [Fact]
    public void SubsetCountsAndInfeasibleGroups()
    {
        Assert.Equal(3 * 64, NaeeSubsetSearch.CountSubsets(16, 4, 4, [0]));
        Assert.Equal(28, NaeeSubsetSearch.CountSubsets(8, 2, 1, []));
        Assert.Equal(long.MaxValue, NaeeSubsetSearch.CountSubsets(256, 128, 1, []));
        var ex = Assert.Throws<MoeCompressException>(() => NaeeSubsetSearch.Search(4, 2, 2, [0, 1], 5000, _ => 0));
        Assert.Equal(ErrorKind.Infeasible, ex.Kind);
        Assert.Contains("group 0", ex.Message);
    }
}
