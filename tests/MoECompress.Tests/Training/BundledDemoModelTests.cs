using MoECompress.Compression.Data;
using MoECompress.Compression.Evaluation;
using MoECompress.Compression.Tokenization;
using MoECompress.Compression.Training;

namespace MoECompress.Tests.Training;

/// <summary>The bundled demo model (models/moe-demo) loads through the engine and really learned its domains.</summary>
public class BundledDemoModelTests
{
    [Theory]
    [InlineData("arxiv")]
    [InlineData("c4")]
    [InlineData("github_oss_with_stack")]
    [InlineData("wikipedia")]
    public void HeldOutPerplexityIsFarBelowTheUnigramBaseline(string domain)
    {
        // Measured on the first 8,192 held-out tokens (engine, context 256, stride 128): unigram/model perplexity
        // ≈ 15× arxiv, 2.9× c4, 31× code, 6.3× wikipedia. "Far below" = at least 2.5× (≥ 0.92 nats/token better).
        const int maxTokens = 8192;
        var heldOut = Path.Combine(TrainingRepository.Calibration, "heldout", domain + ".txt");
        var report = Evaluator.Run(new EvaluateOptions { Model = TrainingRepository.DemoModel, Data = heldOut, MaxTokens = maxTokens });

        // Unigram with add-one smoothing, fitted on the domain's training split, scored on the same targets.
        using var tokenizer = TokenizerLoader.Load(TrainingRepository.DemoModel);
        var bos = tokenizer.BosId ?? -1;
        var train = EvaluationText.Load(Path.Combine(TrainingRepository.Calibration, "train", domain + ".txt"), tokenizer, addBos: false).Tokens;
        var unigram = UnigramModel.Fit(train, tokenizer.VocabSize, bos);
        var held = EvaluationText.Load(heldOut, tokenizer).Tokens.Take(maxTokens).ToArray();
        var targets = held.Skip(1).Where(t => t != bos).ToArray();
        double unigramPerplexity = Math.Exp(-targets.Average(t => unigram.LogProbability(t)));

        Assert.Equal(maxTokens - 1, report.Metrics.TokensScored);
        Assert.True(report.Metrics.Perplexity < unigramPerplexity / 2.5,
            $"{domain}: model perplexity {report.Metrics.Perplexity:F1} is not far below the unigram's {unigramPerplexity:F1}");
    }
}
