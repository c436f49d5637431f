using System.Globalization;
using System.Text;
using MoECompress.Compression.Calibration;
using MoECompress.Compression.Evaluation;

namespace MoECompress.Compression.Demo;

/// <summary>What the demo measured: the calibration run and held-out perplexity per domain.</summary>
public sealed record DemoReport(string Model, CalibrationResult Calibration, IReadOnlyList<(string Domain, EvaluationReport Report)> Domains,
    TimeSpan Elapsed)
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
}
