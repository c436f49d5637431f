using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using MoECompress.Compression.Calibration;
using MoECompress.Compression.Evaluation;
using MoECompress.Compression.Merging;
using MoECompress.Compression.Pruning;
using MoECompress.Compression.Quantization;
using MoECompress.Compression.Reporting;

namespace MoECompress.Compression.Demo;

/// <summary>
/// What the demo measured: the calibration run, held-out perplexity per domain, and each compressed version's size and
/// quality against the original.
/// </summary>
public sealed record DemoReport(string Model, long ModelBytes, CalibrationResult Calibration, IReadOnlyList<(string Domain, EvaluationReport Report)> Domains,
    IReadOnlyList<DemoCompressedModel> Compressed, TimeSpan Elapsed)
{
    /// <summary>The pruning step's report (null with --no-compress).</summary>
    public PruneReport? Prune { get; init; }
    /// <summary>The merging step's report.</summary>
    public MergeReport? Merge { get; init; }
    /// <summary>The quantization step's report.</summary>
    public QuantizeReport? Quantize { get; init; }
    /// <summary>A calibration profile of the pruned model on the same calibration text (expert usage after pruning).</summary>
    public CalibrationProfile? PrunedUsage { get; init; }

    /// <summary>
    /// The HTML report: expert usage before and after pruning, the kept / removed and merged maps, the bit
    /// allocation, per-domain perplexity of every model and the per-layer hidden-state error of each compressed one.
    /// </summary>
    public HtmlReport ToHtml()
    {
        var c = CultureInfo.InvariantCulture;
        var html = new HtmlReport("moe-compress demo: " + Path.GetFileName(Model));
        var rows = new List<(string, string)>
        {
            ("model", Model),
            ("size", $"{ModelBytes / 1e6:0.0} MB"),
            ("calibration", $"{Calibration.Profile.Tokens:N0} tokens, {Calibration.TokensPerSecond:N0} tokens/s"),
        };
        foreach (var m in Compressed) rows.Add((m.Name, $"{m.Description}; {m.TensorBytes / 1e6:0.0} MB; mean KL {MeanKl(m).ToString("0.0000", c)}"));
        rows.Add(("elapsed", $"{Elapsed.TotalSeconds:0.0} s"));
        html.Summary("Summary", rows);
        html.ExpertUsage("Expert usage of the original", Calibration.Profile);
        if (Prune is not null) html.Pruning(Prune);
        if (PrunedUsage is not null) html.ExpertUsage("Expert usage after pruning", PrunedUsage, "expert (index in the pruned model)");
        if (Merge is not null) html.Merging(Merge);
        if (Quantize is not null) html.Quantization(Quantize);
        var models = new List<(string, double[])> { ("original", Domains.Select(d => d.Report.Metrics.Perplexity).ToArray()) };
        models.AddRange(Compressed.Select(m => (m.Name, m.Domains.Select(d => d.Report.Metrics.Perplexity).ToArray())));
        html.DomainPerplexity(Domains.Select(d => d.Domain).ToList(), models);
        if (Compressed.Count > 0)
            html.LayerErrors(Compressed.Select(m => (m.Name, m.Domains[0].Report)).ToList())
                .Note($"Hidden-state errors are measured on the first domain ({Domains[0].Domain}).");
        return html;
    }

    /// <summary>The same facts as <see cref="ToText"/> as indented JSON.</summary>
    public string ToJson()
    {
        var p = Calibration.Profile;
        var root = new JsonObject
        {
            ["model"] = Model,
            ["model_bytes"] = ModelBytes,
            ["calibration"] = new JsonObject
            {
                ["tokens"] = p.Tokens,
                ["tokens_per_second"] = Math.Round(Calibration.TokensPerSecond, 1),
                ["cold_experts"] = p.Coverage.ColdExperts.Count,
                ["unused_experts"] = p.Coverage.UnusedExperts,
                ["super_experts"] = new JsonArray(p.SuperExperts.Experts.Select(e => (JsonNode?)$"L{e.Layer}/E{e.Expert}").ToArray()),
            },
            ["domains"] = new JsonArray(Domains.Select(d => (JsonNode?)new JsonObject
            {
                ["domain"] = d.Domain,
                ["tokens_scored"] = d.Report.Metrics.TokensScored,
                ["perplexity"] = d.Report.Metrics.Perplexity,
            }).ToArray()),
            ["compressed"] = new JsonArray(Compressed.Select(m => (JsonNode?)new JsonObject
            {
                ["name"] = m.Name,
                ["description"] = m.Description,
                ["directory"] = m.Directory,
                ["tensor_bytes"] = m.TensorBytes,
                ["mean_kl"] = MeanKl(m),
                ["domains"] = new JsonArray(m.Domains.Select(d => (JsonNode?)new JsonObject
                {
                    ["domain"] = d.Domain,
                    ["perplexity"] = d.Report.Metrics.Perplexity,
                    ["mean_kl"] = d.Report.Metrics.MeanKl,
                    ["top1_agreement"] = d.Report.Metrics.Top1Agreement,
                }).ToArray()),
            }).ToArray()),
            ["expert_usage"] = new JsonArray(p.Layers.Select(l => (JsonNode?)new JsonObject
            {
                ["layer"] = l.Layer,
                ["selections"] = new JsonArray(l.SelectionCount.Select(n => (JsonNode?)n).ToArray()),
            }).ToArray()),
            ["elapsed_seconds"] = Math.Round(Elapsed.TotalSeconds, 1),
        };
        return root.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    private static double MeanKl(DemoCompressedModel m)
    {
        long tokens = m.Domains.Sum(d => d.Report.Metrics.TokensScored);
        return m.Domains.Sum(d => (d.Report.Metrics.MeanKl ?? 0) * d.Report.Metrics.TokensScored) / Math.Max(1, tokens);
    }

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
                sb.AppendLine(c, $" {MeanKl(m),8:0.0000}  {m.Description}");
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
