using MoECompress.Tests.Infrastructure;
using MoECompress.Compression.Quantization;
using MoECompress.Formats.Errors;

namespace MoECompress.Tests.Quantization;

/// <summary>The multiple-choice knapsack of <see cref="BitAllocator"/> against exhaustive enumeration.</summary>
public sealed class BitAllocatorTests
{
    private static readonly int[] Widths = [2, 3, 4];

    /// <summary>Random items with errors falling in the width (with noise, so some widths are dominated).</summary>
    private static List<BitAllocationItem> RandomItems(Random rng, int layers, int expertsPerLayer, bool withBytes = false)
    {
        var items = new List<BitAllocationItem>();
        for (var l = 0; l < layers; l++)
            for (var e = 0; e < expertsPerLayer; e++)
            {
                var parameters = 1000L * rng.Next(1, 9);
                var errors = Widths.ToDictionary(b => b, b => Math.Pow(4, -b) * (0.3 + rng.NextDouble()));
                var bytes = withBytes ? Widths.ToDictionary(b => b, b => parameters * b / 8 + 40L * rng.Next(1, 4)) : null;
                items.Add(new BitAllocationItem(l, e, parameters, rng.NextDouble(), rng.NextDouble(), errors, bytes));
            }
        return items;
    }

    /// <summary>The optimum by enumerating every combination of group widths (expert or layer groups).</summary>
    private static (double Cost, int[] Widths)? BruteForce(IReadOnlyList<BitAllocationItem> items, BitAllocatorOptions o)
    {
        var layerMode = o.Granularity == BitAllocationGranularity.Layer;
        var groups = layerMode ? items.Select(i => i.Layer).Distinct().ToArray() : Enumerable.Range(0, items.Count).ToArray();
        int GroupOf(int n) => layerMode ? Array.IndexOf(groups, items[n].Layer) : n;
        var candidates = o.Candidates.ToArray();
        double budget = o.BudgetBytes is { } bb ? bb - o.FixedBytes : o.AverageBits!.Value * items.Sum(i => (double)i.Parameters);
        (double, int[])? best = null;
        var total = (int)Math.Pow(candidates.Length, groups.Length);
        for (var code = 0; code < total; code++)
        {
            var pick = new int[groups.Length];
            for (int g = 0, c = code; g < groups.Length; g++, c /= candidates.Length) pick[g] = candidates[c % candidates.Length];
            var widths = Enumerable.Range(0, items.Count).Select(n => items[n].FixedBits is { } f && !layerMode ? f : pick[GroupOf(n)]).ToArray();
            if (!layerMode && Enumerable.Range(0, items.Count).Any(n => items[n].FixedBits is { } f && pick[n] != f)) continue;
            var size = items.Select((it, n) => o.BudgetBytes is null ? (double)widths[n] * it.Parameters : it.Bytes![widths[n]]).Sum();
            if (size > budget + 1e-9) continue;
            var cost = items.Select((it, n) => BitAllocator.Cost(it, widths[n], o)).Sum();
            if (best is null || cost < best.Value.Item1 - 1e-15) best = (cost, widths);
        }
        return best;
    }

    private static void AssertWithinBudget(IReadOnlyList<BitAllocationItem> items, BitAllocatorOptions o, BitAllocation a)
    {
        if (o.BudgetBytes is { } bytes)
            Assert.True(o.FixedBytes + items.Select((it, n) => it.Bytes![a.Widths[n]]).Sum() <= bytes);
        else
            Assert.True(items.Select((it, n) => (double)a.Widths[n] * it.Parameters).Sum() <= o.AverageBits!.Value * items.Sum(i => (double)i.Parameters) + 1e-6);
    }

    [Theory]
    [InlineData(BitAllocationGranularity.Expert, BitAllocationSolver.Auto)]
    [InlineData(BitAllocationGranularity.Expert, BitAllocationSolver.Exact)]
    [InlineData(BitAllocationGranularity.Layer, BitAllocationSolver.Auto)]
    [InlineData(BitAllocationGranularity.Layer, BitAllocationSolver.Exact)]
    public void ExactSolverMatchesBruteForceOnSmallRandomInstances(BitAllocationGranularity granularity, BitAllocationSolver solver)
    {
        var rng = new Random(11);
        for (var trial = 0; trial < 25; trial++)
        {
            // Expert granularity: 5 experts; layer granularity: 5 layers of 2 experts. 3 widths each.
            var items = granularity == BitAllocationGranularity.Expert ? RandomItems(rng, 1, 5) : RandomItems(rng, 5, 2);
            var options = new BitAllocatorOptions
            {
                AverageBits = 2.0 + 2.0 * rng.NextDouble(), Granularity = granularity, Solver = solver,
            };
            var allocation = BitAllocator.Allocate(items, options);
            var expected = BruteForce(items, options)!.Value;
            AssertWithinBudget(items, options, allocation);
            Assert.Equal(expected.Cost, allocation.Objective, 1e-12 * Math.Max(1, expected.Cost));
            Assert.Equal(BitAllocationStatus.Optimal, allocation.Status);
            Tolerance.Close(0, allocation.Gap, 0, 1e-9);
            if (granularity == BitAllocationGranularity.Layer)
                foreach (var layer in items.GroupBy(i => i.Layer))
                    Assert.Single(layer.Select(i => allocation.Widths[items.IndexOf(i)]).Distinct());
        }
    }

    [Theory]
    [InlineData(BitAllocationGranularity.Expert)]
    [InlineData(BitAllocationGranularity.Layer)]
    public void RoundedRelaxationIsFeasibleAndItsBoundBracketsTheOptimum(BitAllocationGranularity granularity)
    {
        var rng = new Random(5);
        for (var trial = 0; trial < 25; trial++)
        {
            var items = granularity == BitAllocationGranularity.Expert ? RandomItems(rng, 1, 6) : RandomItems(rng, 6, 2);
            var options = new BitAllocatorOptions
            {
                AverageBits = 2.0 + 2.0 * rng.NextDouble(), Granularity = granularity, Solver = BitAllocationSolver.Relaxation,
            };
            var allocation = BitAllocator.Allocate(items, options);
            var optimum = BruteForce(items, options)!.Value.Cost;
            AssertWithinBudget(items, options, allocation);
            Assert.True(allocation.LowerBound <= optimum * (1 + 1e-9) + 1e-300, $"LP bound {allocation.LowerBound} above the optimum {optimum}");
            Assert.True(allocation.Objective >= optimum * (1 - 1e-12));
            Assert.InRange(allocation.Gap, 0, 1);
            if (allocation.Status == BitAllocationStatus.Optimal) Assert.Equal(optimum, allocation.Objective, 1e-12 * Math.Max(1, optimum));
        }
    }

    [Fact]
    public void ByteBudgetCountsFixedBytesAndMatchesBruteForce()
    {
        var rng = new Random(3);
        for (var trial = 0; trial < 20; trial++)
        {
            var items = RandomItems(rng, 1, 5, withBytes: true);
            var min = items.Sum(i => i.Bytes![2]);
            var max = items.Sum(i => i.Bytes![4]);
            var options = new BitAllocatorOptions
            {
                BudgetBytes = 5000 + min + (long)((max - min) * rng.NextDouble()), FixedBytes = 5000, BudgetOption = "--size",
            };
            var allocation = BitAllocator.Allocate(items, options);
            AssertWithinBudget(items, options, allocation);
            Assert.Equal(BruteForce(items, options)!.Value.Cost, allocation.Objective, 1e-12);
            Assert.Equal("bytes", allocation.Unit);
            Assert.Equal(5000 + items.Select((it, n) => it.Bytes![allocation.Widths[n]]).Sum(), allocation.Used);
        }
    }

    [Fact]
    public void ABudgetBelowEveryExpertAtTheLowestWidthIsInfeasible()
    {
        var items = RandomItems(new Random(1), 2, 3);
        var ex = Assert.Throws<MoeCompressException>(() => BitAllocator.Allocate(items, new BitAllocatorOptions { AverageBits = 1.5 }));
        Assert.Equal(ErrorKind.Infeasible, ex.Kind);
        Assert.Contains("--bits 1.5", ex.Message);
        Assert.Contains("2 bits", ex.Message);

        var bytes = RandomItems(new Random(1), 1, 3, withBytes: true);
        var minimum = 100 + bytes.Sum(i => i.Bytes![2]);
        var ex2 = Assert.Throws<MoeCompressException>(() => BitAllocator.Allocate(bytes,
            new BitAllocatorOptions { BudgetBytes = minimum - 1, FixedBytes = 100, BudgetOption = "--size" }));
        Assert.Equal(ErrorKind.Infeasible, ex2.Kind);
        Assert.Contains($"--size {minimum - 1}", ex2.Message);
        Assert.Contains($"{minimum} bytes", ex2.Message);
        // Exactly the minimum is feasible: everything at the lowest width.
        var at = BitAllocator.Allocate(bytes, new BitAllocatorOptions { BudgetBytes = minimum, FixedBytes = 100 });
        Assert.All(at.Widths, w => Assert.Equal(2, w));
    }

    [Fact]
    public void BadOptionsAreUsageErrors()
    {
        var items = RandomItems(new Random(1), 1, 2);
        Assert.Equal(ErrorKind.Usage, Assert.Throws<MoeCompressException>(() =>
            BitAllocator.Allocate(items, new BitAllocatorOptions { AverageBits = 3, Candidates = [2, 5] })).Kind);
        Assert.Equal(ErrorKind.Usage, Assert.Throws<MoeCompressException>(() =>
            BitAllocator.Allocate(items, new BitAllocatorOptions())).Kind);
        Assert.Equal(ErrorKind.Usage, Assert.Throws<MoeCompressException>(() =>
            BitAllocator.Allocate(items, new BitAllocatorOptions { AverageBits = 3, BudgetBytes = 10 })).Kind);
        Assert.Equal(ErrorKind.Usage, Assert.Throws<MoeCompressException>(() =>
            BitAllocator.Allocate(items, new BitAllocatorOptions { AverageBits = 3, Gamma = -1 })).Kind);
        // An item without an error at a candidate width is a programming error, not a user one.
        Assert.Throws<ArgumentException>(() =>
            BitAllocator.Allocate(items, new BitAllocatorOptions { AverageBits = 3, Candidates = [2, 3, 8] }));
    }

    [Fact]
    public void MoreSensitiveExpertsGetMoreBitsAndPinsHold()
    {
        // Four equal-sized experts, expert 2 far more sensitive; 3 bits on average from {2, 4}: two get 4 bits.
        var errors = new[] { 0.01, 0.02, 1.0, 0.03 };
        var items = errors.Select((e, i) => new BitAllocationItem(0, i, 100, 0.25, 0.25,
            new Dictionary<int, double> { [2] = e, [4] = e / 16 }, FixedBits: i == 0 ? 4 : null)).ToList();
        var a = BitAllocator.Allocate(items, new BitAllocatorOptions { Candidates = [2, 4], AverageBits = 3 });
        Assert.Equal(new[] { 4, 2, 4, 2 }, a.Widths);
        Assert.Equal(1, a.Pinned);
        Assert.Equal(3.0, a.AverageBits, 12);
        Assert.Equal(new Dictionary<int, int> { [2] = 2, [4] = 2 }, a.WidthCounts());
    }

    [Fact]
    public void CostFollowsThePaperFormula()
    {
        var item = new BitAllocationItem(0, 0, 10, 0.5, 0.25, new Dictionary<int, double> { [3] = 0.1 });
        var o = new BitAllocatorOptions { AverageBits = 3 };
        Assert.Equal(0.5 * Math.Pow(0.25, 1.5) * 0.01, BitAllocator.Cost(item, 3, o), 15);
        Assert.Equal(0.5 * 0.25 * 0.1, BitAllocator.Cost(item, 3, o with { Beta = 1, Gamma = 1 }), 15);
    }

    [Fact]
    public void LargeInstanceRelaxationIsNearTheExactOptimum()
    {
        // 240 experts × 3 widths: the MIP solves it exactly; the rounded LP must be feasible and within its own bound.
        var items = RandomItems(new Random(9), 8, 30);
        var options = new BitAllocatorOptions { AverageBits = 2.7 };
        var exact = BitAllocator.Allocate(items, options with { Solver = BitAllocationSolver.Exact });
        var relaxed = BitAllocator.Allocate(items, options with { Solver = BitAllocationSolver.Relaxation });
        AssertWithinBudget(items, options, exact);
        AssertWithinBudget(items, options, relaxed);
        Assert.True(relaxed.Objective >= exact.Objective * (1 - 1e-9));
        Assert.True(relaxed.LowerBound <= exact.Objective * (1 + 1e-9));
        Assert.True(relaxed.Gap < 0.01, $"gap {relaxed.Gap}");
    }

    [Fact]
    public void BenchmarkInstanceSolves()
    {
        var (seconds, gap) = BitAllocatorBenchmark.Run(4, 32, 5, seed: 2);
        Assert.True(seconds > 0);
        Assert.InRange(gap, 0, 0.05);
    }
}
