namespace MoECompress.Compression.Study;

/// <summary>One compressed model of the study and its held-out quality against the original.</summary>
/// <param name="Section">prune, merge, task or quantize.</param>
/// <param name="Name">What was done (method and settings).</param>
/// <param name="Setting">Reduction or bit budget as shown in the table.</param>
/// <param name="TensorBytes">Tensor bytes of the compressed checkpoint.</param>
/// <param name="Domains">Per held-out domain: perplexity of the model, of the base, mean KL(base ‖ model), top-1 agreement, tokens scored.</param>
/// <param name="Seconds">Wall time of the compression step (without evaluation).</param>
/// <param name="Detail">A short note from the step's report (e.g. the router-row choice, the allocation).</param>
public sealed record QualityStudyRow(string Section, string Name, string Setting, long TensorBytes,
    IReadOnlyList<DomainQuality> Domains, double Seconds, string Detail = "")
{
    /// <summary>Perplexity over all domains: exp of the token-weighted mean NLL.</summary>
    public double Perplexity => Math.Exp(Domains.Sum(d => Math.Log(d.Perplexity) * d.Tokens) / Math.Max(1, Domains.Sum(d => d.Tokens)));
    /// <summary>Base perplexity over the same tokens.</summary>
    public double BasePerplexity => Math.Exp(Domains.Sum(d => Math.Log(d.BasePerplexity) * d.Tokens) / Math.Max(1, Domains.Sum(d => d.Tokens)));
    /// <summary>Token-weighted mean KL.</summary>
    public double MeanKl => Domains.Sum(d => d.MeanKl * d.Tokens) / Math.Max(1, Domains.Sum(d => d.Tokens));
    /// <summary>Token-weighted top-1 agreement.</summary>
    public double Top1 => Domains.Sum(d => d.Top1 * d.Tokens) / Math.Max(1, Domains.Sum(d => d.Tokens));
}

/// <summary>Held-out quality of one model on one domain.</summary>
public sealed record DomainQuality(string Domain, double Perplexity, double BasePerplexity, double MeanKl, double Top1, long Tokens);
