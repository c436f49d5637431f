using MoECompress.Tests.Infrastructure;
using MoECompress.Compression.Training;

namespace MoECompress.Tests.Training;

public class ReferenceModelEvaluatorTests
{
    [Fact]
    public void UnigramUsesAddOneSmoothing()
    {
        // Counts: id 3 twice, id 4 once; BOS (1) ignored; V = 10 → p(3) = 3/13, p(4) = 2/13, p(9) = 1/13.
        var unigram = UnigramModel.Fit([1, 3, 3, 4, 1], vocabularySize: 10, ignoredId: 1);
        Assert.Equal(3, unigram.TokenCount);
        Assert.Equal(Math.Log(3.0 / 13), unigram.LogProbability(3), 12);
        Assert.Equal(Math.Log(2.0 / 13), unigram.LogProbability(4), 12);
        Assert.Equal(Math.Log(1.0 / 13), unigram.LogProbability(9), 12);
    }

    [Fact]
    public void ScoresEveryNonBosTargetOnceAndCountsEverySelection()
    {
        var options = TinyTrainingFixture.Options(steps: 1);
        using var model = new MixtralTrainingModel(options, TinyTrainingFixture.Vocabulary, options.Seed);
        // 30 tokens with two BOS (id 1) among the targets: windows of 13 sharing one token → targets 1..29.
        var tokens = Enumerable.Range(0, 30).Select(i => i % 15 == 0 ? 1 : 2 + i % 40).ToArray();
        var unigram = UnigramModel.Fit(tokens, TinyTrainingFixture.Vocabulary, 1);
        var result = ReferenceModelEvaluator.EvaluateTokens(model, "x", tokens, 1, unigram, batchSize: 2);
        Assert.Equal(29 - 1, result.ScoredTokens);
        Assert.True(result.Perplexity > 1 && double.IsFinite(result.Perplexity));
        // An untrained model with tiny weights is close to uniform over the vocabulary.
        Assert.InRange(result.Perplexity, TinyTrainingFixture.Vocabulary * 0.8, TinyTrainingFixture.Vocabulary * 1.25);
        Assert.Equal(options.Layers, result.ExpertUsage.Length);
        foreach (var row in result.ExpertUsage) Tolerance.Close(1.0, row.Sum(), Tolerance.Double);
    }

    [Fact]
    public void SpecialisationFiguresFollowTheUsage()
    {
        var uniform = new DomainEvaluation("u", 10, 2, 4, [[0.25, 0.25, 0.25, 0.25]]);
        var skewed = new DomainEvaluation("s", 10, 2, 4, [[0.5, 0.5, 0.0, 0.0]]);
        var same = new ReferenceEvaluationReport([uniform, uniform with { Domain = "v" }], 1, 4);
        Assert.Equal(0.0, same.DomainDivergenceBits(0), 12);
        Assert.Equal(1.0, same.UsageRatio(0, 2), 12);
        var different = new ReferenceEvaluationReport([uniform, skewed], 1, 4);
        Assert.Equal(2.0, ReferenceEvaluationReport.EntropyBits(uniform.ExpertUsage[0]), 12);
        Assert.Equal(2.0, different.UsageRatio(0, 0), 12);
        Assert.True(double.IsPositiveInfinity(different.UsageRatio(0, 3)));
        // Mixture [3/8, 3/8, 1/8, 1/8] has entropy 1.8113 bits; mean entropy of the rows is (2 + 1)/2.
        double mix = -(2 * 0.375 * Math.Log2(0.375) + 2 * 0.125 * Math.Log2(0.125));
        Tolerance.Close(mix - 1.5, different.DomainDivergenceBits(0), Tolerance.Double, 1e-12);
        Assert.Contains("| s |", different.ToMarkdown());
    }
}
