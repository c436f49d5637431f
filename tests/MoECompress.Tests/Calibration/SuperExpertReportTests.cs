using MoECompress.Tests.Infrastructure;
using MoECompress.Compression.Calibration;

namespace MoECompress.Tests.Calibration;

/// <summary>The super-expert rule of DESIGN.md §4 on hand-made maxima.</summary>
public sealed class SuperExpertReportTests
{
    [Fact]
    public void PercentileInterpolatesLinearlyBetweenRanksLikeNumpy()
    {
        // numpy.percentile([1, 2, 3, 4], 99.5) = 3.985; numpy.percentile([5], 99.5) = 5; median of [1, 3] = 2
        Assert.Equal(3.985, SuperExpertReport.PercentileOfSorted(new double[] { 1, 2, 3, 4 }, 99.5), 12);
        Assert.Equal(5.0, SuperExpertReport.PercentileOfSorted(new double[] { 5 }, 99.5));
        Assert.Equal(2.0, SuperExpertReport.PercentileOfSorted(new double[] { 1, 3 }, 50));
    }

    [Fact]
    public void ExpertsAboveThePercentileAndATenthOfTheGlobalMaxInTheFirstThreeQuartersAreSuper()
    {
        // 10 layers x 100 experts of 40 decoder layers (all inside the first 75%): maxima 0.5 except five outliers.
        var maxima = Enumerable.Range(0, 10).ToDictionary(l => l, _ => Enumerable.Repeat(0.5, 100).ToArray());
        maxima[0][7] = 1000;  // global max
        maxima[2][3] = 500;
        maxima[4][0] = 150;
        maxima[6][9] = 90;    // above p99.5 but not above 1000/10
        maxima[9][1] = 80;
        var report = SuperExpertReport.Find(maxima.ToDictionary(kv => kv.Key, kv => (IReadOnlyList<double>)kv.Value), numLayers: 40);

        // sorted[994] = 0.5, sorted[995] = 80: p99.5 = 0.5 + 0.005 * 79.5
        Tolerance.Close(0.5 + 0.005 * 79.5, report.Percentile995, Tolerance.Double);
        Assert.Equal(1000, report.GlobalMax);
        Assert.Equal(new[] { (0, 7), (2, 3), (4, 0) }, report.Experts.Select(s => (s.Layer, s.Expert)));
        Assert.True(report.IsSuper(2, 3));
        Assert.False(report.IsSuper(6, 9));
    }

    [Fact]
    public void OutliersInTheLastQuarterOfLayersAreNeverSuper()
    {
        var maxima = new Dictionary<int, IReadOnlyList<double>>
        {
            [0] = new double[] { 1, 1, 1, 1 },
            [1] = new double[] { 1, 1, 1, 1 },
            [3] = new double[] { 1, 400, 1, 1 }, // layer 3 of 4: 3 >= 0.75 * 4
        };
        var report = SuperExpertReport.Find(maxima, numLayers: 4);
        Assert.Equal(3.0, report.LayerLimit);
        Assert.Empty(report.Experts);

        maxima[2] = new double[] { 1, 1, 1, 900 }; // now the largest, in layer 2 < 3
        report = SuperExpertReport.Find(maxima, numLayers: 4);
        Assert.Equal(new[] { (2, 3) }, report.Experts.Select(s => (s.Layer, s.Expert)));
    }
}
