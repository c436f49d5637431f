using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace MoECompress.Compression.Study;

/// <summary>The quality tables of one <see cref="QualityStudy"/> run.</summary>
public sealed record QualityStudyReport(string Model, QualityStudyOptions Options, IReadOnlyList<string> Domains,
    IReadOnlyList<QualityStudyRow> Rows, double ElapsedSeconds)
{
    /// <summary>The report as indented JSON.</summary>
    public string ToJson()
    {
        var rows = new JsonArray();
        foreach (var r in Rows)
            rows.Add(new JsonObject
            {
                ["section"] = r.Section, ["name"] = r.Name, ["setting"] = r.Setting, ["tensor_bytes"] = r.TensorBytes,
                ["perplexity"] = r.Perplexity, ["base_perplexity"] = r.BasePerplexity, ["mean_kl"] = r.MeanKl, ["top1_agreement"] = r.Top1,
                ["seconds"] = Math.Round(r.Seconds, 2), ["detail"] = r.Detail,
                ["domains"] = new JsonArray(r.Domains.Select(d => (JsonNode)new JsonObject
                {
                    ["domain"] = d.Domain, ["perplexity"] = d.Perplexity, ["base_perplexity"] = d.BasePerplexity,
                    ["mean_kl"] = d.MeanKl, ["top1_agreement"] = d.Top1, ["tokens"] = d.Tokens,
                }).ToArray()),
            });
        return new JsonObject
        {
            ["model"] = Model,
            ["samples"] = Options.Samples,
            ["seq_len"] = Options.SeqLen,
            ["eval_tokens_per_domain"] = Options.EvalTokensPerDomain,
            ["group_size"] = Options.GroupSize,
            ["task_domain"] = Options.TaskDomain,
            ["elapsed_seconds"] = Math.Round(ElapsedSeconds, 1),
            ["rows"] = rows,
        }.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    /// <summary>The tables as Markdown, one per section.</summary>
    public string ToMarkdown()
    {
        var c = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.AppendLine("# Quality study");
        sb.AppendLine();
        sb.AppendLine(FormattableString.Invariant($"Model `{Model}`; general profile: bundled calibration set, {Options.Samples} × {Options.SeqLen} tokens; ") +
                         FormattableString.Invariant($"held-out: first {Options.EvalTokensPerDomain:N0} tokens of each domain ({string.Join(", ", Domains)}). ") +
                         "PPL over all domains = exp(token-weighted mean NLL); KL = mean KL(original ‖ compressed) per token, nats; " +
                         FormattableString.Invariant($"top-1 = agreement of the most likely next token with the original. Run time {ElapsedSeconds / 60:0.0} min."));
        var original = Rows.FirstOrDefault(r => r.Section == "original");
        foreach (var section in new[] { ("prune", "Pruning"), ("merge", "Merging"), ("task", "Task-adaptive pruning"), ("quantize", "Quantization"), ("propagation", "Propagation in the sequential pass (GPTQ, pruning, merging)"), ("substitute", "Compressed experts vs reduced top-k") })
        {
            var rows = Rows.Where(r => r.Section == section.Item1).ToList();
            if (rows.Count == 0) continue;
            sb.AppendLine();
            sb.AppendLine(c, $"## {section.Item2}");
            sb.AppendLine();
            sb.Append("| method | setting | size MB | PPL | KL | top-1 |");
            foreach (var d in Domains) sb.Append(" PPL ").Append(d).Append(" |");
            sb.AppendLine(" s | note |");
            sb.Append("|---|---|---:|---:|---:|---:|");
            foreach (var _ in Domains) sb.Append("---:|");
            sb.AppendLine("---:|---|");
            if (original is not null) Row(sb, original, c);
            foreach (var r in rows) Row(sb, r, c);
        }
        return sb.ToString();
    }

    private void Row(StringBuilder sb, QualityStudyRow r, CultureInfo c)
    {
        sb.Append(c, $"| {r.Name} | {r.Setting} | {r.TensorBytes / 1e6:0.0} | {r.Perplexity:0.00} | {r.MeanKl:0.0000} | {r.Top1 * 100:0.0}% |");
        foreach (var d in Domains)
        {
            var q = r.Domains.FirstOrDefault(x => x.Domain == d);
            sb.Append(q is null ? " |" : string.Create(c, $" {q.Perplexity:0.00} |"));
        }
        sb.AppendLine(c, $" {r.Seconds:0.0} | {r.Detail} |");
    }
}
