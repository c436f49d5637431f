using System.Globalization;
using System.Text;
using MoECompress.Compression.Calibration;
using MoECompress.Compression.Evaluation;

namespace MoECompress.Compression.Demo;

/// <summary>
/// What the demo measured: the calibration run, held-out perplexity per domain, and each compressed version's size and
/// quality against the original.
/// </summary>
public sealed record DemoReport(string Model, long ModelBytes, CalibrationResult Calibration, IReadOnlyList<(string Domain, EvaluationReport Report)> Domains,
    IReadOnlyList<DemoCompressedModel> Compressed, TimeSpan Elapsed)
{
    /// <summary>A compact plain-text summary.</summary>
    public string ToText()
    {
        var c = CultureInfo.InvariantCulture;
        var p = Calibration.Profile;
        var sb = new StringBuilder();
        sb.AppendLine(c, $"model        {Model}");
        sb.AppendLine(c, $"calibration  {p.Tokens:N0} tokens through {p.Layers.Count} MoE layers, {Calibration.TokensPerSecond:N0} tokens/s");
        var supers = p.SuperExperts.Experts.Count == 0 ? "" : " (" + string.Join(", ", p.SuperExperts.Experts.Select(s => $"L{s.Layer}/E{s.Expert}")) + ")";
        sb.AppendLine(c, $"coverage     {p.Coverage.ColdExperts.Count} cold expert(s), {p.Coverage.UnusedExperts} never routed; {p.SuperExperts.Experts.Count} super expert(s){supers}");
        sb.AppendLine();
        sb.AppendLine("held-out domain              tokens scored   perplexity");
        foreach (var (domain, report) in Domains)
            sb.AppendLine(c, $"{domain,-28} {report.Metrics.TokensScored,13:N0} {report.Metrics.Perplexity,12:0.00}");
        if (Compressed.Count > 0)
        {
            sb.AppendLine();
            sb.AppendLine("compressed vs original on the same held-out tokens (PPL per domain; KL = mean KL(original || compressed), nats/token):");
            sb.Append(c, $"{"model",-10} {"size MB",8}");
            foreach (var (domain, _) in Domains) sb.Append(c, $" {Short(domain),9}");
            sb.AppendLine(c, $" {"mean KL",8}  what");
            sb.Append(c, $"{"original",-10} {ModelBytes / 1e6,8:0.0}");
            foreach (var (_, report) in Domains) sb.Append(c, $" {report.Metrics.Perplexity,9:0.00}");
            sb.AppendLine(c, $" {0.0,8:0.0000}");
            foreach (var m in Compressed)
            {
                sb.Append(c, $"{m.Name,-10} {m.TensorBytes / 1e6,8:0.0}");
                foreach (var (_, report) in m.Domains) sb.Append(c, $" {report.Metrics.Perplexity,9:0.00}");
                long tokens = m.Domains.Sum(d => d.Report.Metrics.TokensScored);
                double kl = m.Domains.Sum(d => (d.Report.Metrics.MeanKl ?? 0) * d.Report.Metrics.TokensScored) / Math.Max(1, tokens);
                sb.AppendLine(c, $" {kl,8:0.0000}  {m.Description}");
            }
            if (Compressed.Any(m => !m.Directory.Contains("moe-compress-demo-out-", StringComparison.Ordinal)))
                sb.AppendLine(c, $"written to   {Path.GetDirectoryName(Compressed[0].Directory)}");
        }
        sb.AppendLine();
        sb.AppendLine("expert usage (share of top-k selections per expert, calibration set):");
        foreach (var layer in p.Layers)
        {
            long total = layer.SelectionCount.Sum();
            var shares = layer.SelectionCount.Select(n => total == 0 ? 0 : 100.0 * n / total);
            sb.AppendLine(c, $"  layer {layer.Layer}: {string.Join(" ", shares.Select(s => s.ToString("0", c).PadLeft(3) + "%"))}");
        }
        sb.Append(c, $"elapsed      {Elapsed.TotalSeconds:0.0} s");
        return sb.ToString();
    }

    private static string Short(string domain) => domain.Length <= 9 ? domain : domain[..9];
}
