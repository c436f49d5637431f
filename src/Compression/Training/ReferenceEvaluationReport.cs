using System.Globalization;
using System.Text;

namespace MoECompress.Compression.Training;

/// <summary>Per-domain held-out results of a reference model and the specialisation figures derived from them.</summary>
public sealed record ReferenceEvaluationReport(IReadOnlyList<DomainEvaluation> Domains, int Layers, int Experts)
{
    /// <summary>
    /// For layer l and expert e: max over domains of its usage divided by min over domains (how much more one domain
    /// uses it than another; 1 = no specialisation). Infinite when some domain never selects the expert.
    /// </summary>
    public double UsageRatio(int layer, int expert)
    {
        var values = Domains.Select(d => d.ExpertUsage[layer][expert]).ToList();
        double min = values.Min(), max = values.Max();
        return min > 0 ? max / min : double.PositiveInfinity;
    }

    /// <summary>Entropy (bits) of a domain's usage distribution in a layer; log2(E) means uniform usage.</summary>
    public static double EntropyBits(double[] usage) => -usage.Where(p => p > 0).Sum(p => p * Math.Log2(p));

    /// <summary>
    /// Jensen–Shannon divergence (bits, 0…1) between the domains' usage distributions in a layer, each domain weighted
    /// equally: 0 when all domains route alike, larger when experts specialise by domain.
    /// </summary>
    public double DomainDivergenceBits(int layer)
    {
        var rows = Domains.Select(d => d.ExpertUsage[layer]).ToList();
        var mean = new double[Experts];
        foreach (var r in rows) for (int e = 0; e < Experts; e++) mean[e] += r[e] / rows.Count;
        return EntropyBits(mean) - rows.Average(EntropyBits);
    }

    /// <summary>Markdown tables: perplexities per domain, and expert usage per layer with the specialisation summary.</summary>
    public string ToMarkdown()
    {
        var c = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.AppendLine("| domain | scored tokens | model perplexity | unigram perplexity (add-one) | ratio |");
        sb.AppendLine("|---|---:|---:|---:|---:|");
        foreach (var d in Domains)
            sb.AppendLine(string.Create(c, $"| {d.Domain} | {d.ScoredTokens:N0} | {d.Perplexity:F2} | {d.UnigramPerplexity:F1} | {d.UnigramPerplexity / d.Perplexity:F1}× |"));
        sb.AppendLine();
        for (int l = 0; l < Layers; l++)
        {
            sb.AppendLine(string.Create(c, $"Layer {l} — share of top-k selections per expert (%); Jensen–Shannon divergence between domains {DomainDivergenceBits(l):F3} bits"));
            sb.AppendLine();
            sb.Append("| domain |");
            for (int e = 0; e < Experts; e++) sb.Append(c, $" E{e} |");
            sb.AppendLine(" entropy (bits) |");
            sb.Append("|---|");
            for (int e = 0; e < Experts; e++) sb.Append("---:|");
            sb.AppendLine("---:|");
            foreach (var d in Domains)
            {
                sb.Append(c, $"| {d.Domain} |");
                for (int e = 0; e < Experts; e++) sb.Append(c, $" {100 * d.ExpertUsage[l][e]:F1} |");
                sb.AppendLine(string.Create(c, $" {EntropyBits(d.ExpertUsage[l]):F2} |"));
            }
            sb.Append("| max/min over domains |");
            for (int e = 0; e < Experts; e++)
            {
                double r = UsageRatio(l, e);
                sb.Append(double.IsPositiveInfinity(r) ? " ∞ |" : string.Create(c, $" {r:F1} |"));
            }
            sb.AppendLine(string.Create(c, $" uniform = {Math.Log2(Experts):F2} |"));
            sb.AppendLine();
        }
        return sb.ToString();
    }
}
