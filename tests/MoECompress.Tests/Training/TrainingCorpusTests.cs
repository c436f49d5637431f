using MoECompress.Compression.Training;

namespace MoECompress.Tests.Training;

/// <summary>Domain oversampling (<c>train-reference --repeat</c>): a repeated domain's windows appear N times per epoch.</summary>
public sealed class TrainingCorpusTests
{
    private static TrainingCorpus Corpus(IReadOnlyList<int>? repeats)
    {
        // Domain a: tokens 0..99 (11 windows of 8+1), domain b: tokens 1000..1039 (4 windows); seq-len 8.
        var a = Enumerable.Range(0, 100).ToArray();
        var b = Enumerable.Range(1000, 40).ToArray();
        return new TrainingCorpus([new DomainTokens("a", a, 1), new DomainTokens("b", b, 1)], 8, 7, repeats);
    }

    [Fact]
    public void A_repeated_domain_fills_its_share_of_every_epoch()
    {
        var once = Corpus(null);
        var repeated = Corpus([1, 3]);
        Assert.Equal([12, 4], once.WindowsPerDomain());
        Assert.Equal([12, 12], repeated.WindowsPerDomain());
        Assert.Equal(once.TokenCount, repeated.TokenCount); // the text is the same; only the sampling changes

        // One epoch = 24 windows: 12 from b, each of b's 4 windows exactly 3 times.
        var ids = repeated.Batch(0, 24);
        var starts = Enumerable.Range(0, 24).Select(r => ids[r * 9]).ToList();
        Assert.Equal(12, starts.Count(s => s >= 1000));
        Assert.All(starts.Where(s => s >= 1000).GroupBy(s => s), g => Assert.Equal(3, g.Count()));
        Assert.All(starts.Where(s => s < 1000).GroupBy(s => s), g => Assert.Single(g));
    }
}
