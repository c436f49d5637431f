using System.Globalization;
using System.Text;
using MoECompress.Compression.Calibration;
using MoECompress.Compression.Evaluation;
using MoECompress.Compression.Merging;
using MoECompress.Compression.Pruning;
using MoECompress.Compression.Quantization;

namespace MoECompress.Compression.Reporting;

/// <summary>
/// A self-contained HTML report (one file, PNG figures embedded as base64, no scripts, no external resources) built
/// from the existing report objects: expert usage per layer × expert from calibration profiles (before / after),
/// the kept / removed / merged map of a <see cref="PruneReport"/> or <see cref="MergeReport"/>, the bit allocation of
/// a <see cref="QuantizeReport"/>, per-layer hidden-state error and per-domain perplexity from
/// <see cref="EvaluationReport"/>s. Sections appear in the order they are added; each figure keeps its PNG in
/// <see cref="Figures"/> too.
/// </summary>
public sealed class HtmlReport(string title)
{
    /// <summary>File name written beside compression-report.md/.json.</summary>
    public const string FileName = "report.html";

    private static readonly CultureInfo C = CultureInfo.InvariantCulture;
    private readonly StringBuilder _body = new();
    private readonly List<(string Name, byte[] Png)> _figures = [];

    /// <summary>Every figure added so far: a file-name-safe name and its PNG bytes.</summary>
    public IReadOnlyList<(string Name, byte[] Png)> Figures => _figures;

    /// <summary>A two-column table of facts (model, method, sizes, ...).</summary>
    public HtmlReport Summary(string heading, IEnumerable<(string Key, string Value)> rows)
    {
        _body.Append("<section><h2>").Append(E(heading)).Append("</h2><table>");
        foreach (var (k, v) in rows) _body.Append("<tr><th>").Append(E(k)).Append("</th><td>").Append(E(v)).Append("</td></tr>");
        _body.Append("</table></section>\n");
        return this;
    }

    /// <summary>A paragraph of text.</summary>
    public HtmlReport Note(string text)
    {
        _body.Append("<p class=\"note\">").Append(E(text)).Append("</p>\n");
        return this;
    }

    /// <summary>
    /// Expert usage of a calibration profile: per MoE layer and expert, the share of the layer's top-k selections the
    /// expert takes. <paramref name="expertAxis"/> says which indices the columns are (original or new after surgery).
    /// </summary>
    public HtmlReport ExpertUsage(string heading, CalibrationProfile profile, string expertAxis = "expert (original index)")
    {
        ArgumentNullException.ThrowIfNull(profile);
        var layers = profile.Layers.Select(l => l.Layer).ToList();
        var shares = profile.Layers.Select(l =>
        {
            double total = l.SelectionCount.Sum();
            return l.SelectionCount.Select(n => total == 0 ? 0 : n / total).ToArray();
        }).ToList();
        double max = shares.SelectMany(s => s).DefaultIfEmpty(0).Max();
        var png = ReportFigures.Grid(heading, layers, shares, v => (100 * v).ToString("0", C) + "%", v => ReportFigures.Scale(v, 0, max), expertAxis);
        return Figure(heading, png,
            $"Share of the top-k routing decisions each expert takes per MoE layer, over {profile.Tokens:N0} calibration tokens " +
            $"(uniform routing would give {(profile.Layers.Count == 0 ? 0 : 100.0 / profile.Layers[0].NumExperts):0.#}% each).");
    }

    /// <summary>The pruning decision: per layer and original expert, kept (→ new index), protected super expert, or removed.</summary>
    public HtmlReport Pruning(PruneReport report)
    {
        ArgumentNullException.ThrowIfNull(report);
        return ExpertMap("Kept and removed experts", $"Kept and removed experts ({report.Method}, {report.InputExperts} → {report.OutputExperts})",
            report.InputExperts, report.Layers, l => l.Layer, (layer, cells) =>
            {
                foreach (var k in layer.Kept)
                    cells[k.Original] = new($"→{k.New}", k.Protected ? ReportFigures.Protected : ReportFigures.Kept);
                foreach (var r in layer.Removed)
                    cells[r.Original] = new("×", ReportFigures.Removed);
            },
            "Green: kept (→ its index in the output); orange: a protected super expert; red ×: removed. " +
            $"Scores: {report.MethodDescription}.");
    }

    /// <summary>The merge: per layer and original expert, the output expert its cluster became (one colour per cluster).</summary>
    public HtmlReport Merging(MergeReport report)
    {
        ArgumentNullException.ThrowIfNull(report);
        return ExpertMap("Merged experts", $"Merged experts ({MergeReport.Name(report.Method)}, {report.InputExperts} → {report.OutputExperts})",
            report.InputExperts, report.Layers, l => l.Layer, (layer, cells) =>
            {
                foreach (var cluster in layer.Clusters)
                    foreach (var member in cluster.Members)
                        cells[member] = cluster.Members.Count == 1
                            ? new($"{cluster.OutputExpert}", ReportFigures.Kept)
                            : new($"→{cluster.OutputExpert}", ReportFigures.Category(cluster.OutputExpert));
            },
            "Each cell is an input expert labelled with the output expert it became; experts merged together share a colour " +
            "(green: left alone).");
    }

    /// <summary>A layer × original-expert map whose cells <paramref name="fill"/> sets (cells it leaves unset show "?").</summary>
    private HtmlReport ExpertMap<TLayer>(string heading, string title, int experts, IReadOnlyList<TLayer> layers, Func<TLayer, int> index,
        Action<TLayer, ReportFigures.Cell[]> fill, string caption)
    {
        var rows = layers.Select(layer =>
        {
            var cells = new ReportFigures.Cell[experts];
            fill(layer, cells);
            return cells.Select(c => c.Label is null ? new ReportFigures.Cell("?", ReportFigures.Category(7)) : c).ToArray();
        }).ToList();
        return Figure(heading, ReportFigures.Cells(title, layers.Select(index).ToList(), rows), caption);
    }

    /// <summary>The bit allocation: the width of every routed expert.</summary>
    public HtmlReport Quantization(QuantizeReport report)
    {
        ArgumentNullException.ThrowIfNull(report);
        var layers = report.Widths.Keys.Order().ToList();
        var values = layers.Select(l => report.Widths[l].Select(w => (double)w).ToArray()).ToList();
        var png = ReportFigures.Grid($"Bits per expert ({report.AverageBits:0.##} on average)", layers, values,
            v => ((int)v).ToString(C), v => ReportFigures.Scale(Math.Log2(v), 0, 3), "expert (index in the quantized model)");
        var counts = string.Join(", ", report.WidthCounts().OrderBy(kv => kv.Key).Select(kv => $"{kv.Value} × {kv.Key} bits"));
        return Figure("Bit allocation", png, $"Width of every routed expert's weights ({counts}); brighter = more bits.");
    }

    /// <summary>Per-layer relative hidden-state error of one or more evaluations against their base.</summary>
    public HtmlReport LayerErrors(IReadOnlyList<(string Model, EvaluationReport Report)> evaluations)
    {
        ArgumentNullException.ThrowIfNull(evaluations);
        var withErrors = evaluations.Where(e => e.Report.Metrics.LayerErrors.Count > 0).ToList();
        if (withErrors.Count == 0) return Note("No per-layer hidden-state errors (no base model to compare with).");
        var layers = withErrors[0].Report.Metrics.LayerErrors.Select(e => e.Layer.ToString(C)).ToList();
        var series = withErrors.Select(e => (e.Model, e.Report.Metrics.LayerErrors.Select(x => x.RelativeError).ToArray())).ToList();
        var png = ReportFigures.GroupedBars("Hidden-state error per decoder layer", layers, series, "‖ΔH‖ / ‖H_base‖");
        return Figure("Hidden-state error per layer", png, LayerError.Definition + ".");
    }

    /// <summary>Perplexity per held-out domain of several models (the first is usually the original).</summary>
    public HtmlReport DomainPerplexity(IReadOnlyList<string> domains, IReadOnlyList<(string Model, double[] Perplexity)> models)
    {
        ArgumentNullException.ThrowIfNull(domains);
        ArgumentNullException.ThrowIfNull(models);
        var png = ReportFigures.GroupedBars("Perplexity per held-out domain", domains, models, "perplexity", log: true);
        var table = new StringBuilder("<table><tr><th>model</th>");
        foreach (var d in domains) table.Append("<th>").Append(E(d)).Append("</th>");
        table.Append("</tr>");
        foreach (var (model, ppl) in models)
        {
            table.Append("<tr><th>").Append(E(model)).Append("</th>");
            foreach (var p in ppl) table.Append("<td>").Append(p.ToString("0.00", C)).Append("</td>");
            table.Append("</tr>");
        }
        table.Append("</table>");
        return Figure("Perplexity per domain", png, "Sliding-window perplexity on the same held-out tokens of each domain (lower is better).", table.ToString());
    }

    /// <summary>An evaluation against a base: its headline numbers and its per-layer error.</summary>
    public HtmlReport Evaluation(string model, EvaluationReport report)
    {
        ArgumentNullException.ThrowIfNull(report);
        var m = report.Metrics;
        var rows = new List<(string, string)>
        {
            ("tokens scored", m.TokensScored.ToString("N0", C)),
            ("perplexity", m.Perplexity.ToString("0.00", C)),
        };
        if (m.BasePerplexity is double bp) rows.Add(("base perplexity", bp.ToString("0.00", C)));
        if (m.MeanKl is double kl) rows.Add(("mean KL(base ‖ model), nats/token", kl.ToString("0.0000", C)));
        if (m.Top1Agreement is double top1) rows.Add(("top-1 agreement", (100 * top1).ToString("0.0", C) + "%"));
        Summary($"Evaluation of {model}", rows);
        return LayerErrors([(model, report)]);
    }

    /// <summary>The whole document.</summary>
    public string Render()
    {
        var sb = new StringBuilder();
        sb.Append("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>").Append(E(title)).Append("</title>\n<style>")
          .Append("body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}")
          .Append("h1{font-size:1.6em}h2{font-size:1.25em;margin-top:1.6em;border-bottom:1px solid #ddd}")
          .Append("table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ddd;padding:.25em .6em;text-align:left}")
          .Append("td{font-variant-numeric:tabular-nums}img{max-width:100%;height:auto;display:block;margin:.5em 0}")
          .Append("figure{margin:0}figcaption,.note{color:#555;font-size:.92em}")
          .Append("</style></head><body>\n<h1>").Append(E(title)).Append("</h1>\n")
          .Append(_body)
          // No wall clock: equal runs give equal bytes (report.json records when it was written).
          .Append("<footer class=\"note\">moe-compress ").Append(E(Evaluator.ToolVersion)).Append("</footer>\n</body></html>\n");
        return sb.ToString();
    }

    /// <summary>Writes <see cref="Render"/> to <paramref name="path"/> through a temporary file renamed into place.</summary>
    public void Write(string path)
    {
        var tmp = path + ".tmp-" + Guid.NewGuid().ToString("N")[..8];
        File.WriteAllText(tmp, Render(), new UTF8Encoding(false));
        File.Move(tmp, path, overwrite: true);
    }

    private HtmlReport Figure(string heading, byte[] png, string caption, string? extraHtml = null)
    {
        var name = new string(heading.ToLowerInvariant().Select(ch => char.IsAsciiLetterOrDigit(ch) ? ch : '-').ToArray()).Trim('-');
        while (name.Contains("--", StringComparison.Ordinal)) name = name.Replace("--", "-", StringComparison.Ordinal);
        _figures.Add((name, png));
        _body.Append("<section><h2>").Append(E(heading)).Append("</h2><figure><img alt=\"").Append(E(heading))
             .Append("\" src=\"data:image/png;base64,").Append(Convert.ToBase64String(png)).Append("\"><figcaption>")
             .Append(E(caption)).Append("</figcaption></figure>").Append(extraHtml).Append("</section>\n");
        return this;
    }

    /// <summary>Escapes the characters HTML gives a meaning (the rest, ×, →, ‖ …, stays readable in the UTF-8 file).</summary>
    private static string E(string text) =>
        text.Replace("&", "&amp;", StringComparison.Ordinal).Replace("<", "&lt;", StringComparison.Ordinal)
            .Replace(">", "&gt;", StringComparison.Ordinal).Replace("\"", "&quot;", StringComparison.Ordinal);
}
