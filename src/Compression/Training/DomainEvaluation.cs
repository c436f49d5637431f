namespace MoECompress.Compression.Training;

/// <summary>
/// Held-out figures of one domain: the number of scored tokens (targets other than BOS), the model's perplexity,
/// the add-one unigram baseline's perplexity on the same targets, and the expert usage per layer:
/// <c>ExpertUsage[layer][expert]</c> = fraction of that layer's top-k selections (over every input position) that went
/// to the expert (each row sums to 1).
/// </summary>
public sealed record DomainEvaluation(string Domain, long ScoredTokens, double Perplexity, double UnigramPerplexity,
    double[][] ExpertUsage)
{
    /// <summary>Mean cross-entropy in nats per token (ln of <see cref="Perplexity"/>).</summary>
    public double CrossEntropy => Math.Log(Perplexity);
}
