using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using MoECompress.Compression.Calibration;
using MoECompress.Compression.Evaluation;
using MoECompress.Compression.Merging;
using MoECompress.Compression.Pruning;
using MoECompress.Compression.Quantization;
using MoECompress.Compression.Reporting;

namespace MoECompress.Compression.Pipeline;

/// <summary>What a <see cref="CompressionPipeline"/> run did: every step's own report, the calibration passes made, and
/// the end-to-end evaluation of the output against the original.</summary>
public sealed record CompressionPipelineReport
{
    private static readonly CultureInfo C = CultureInfo.InvariantCulture;

    /// <summary>One step's result.</summary>
    /// <param name="Index">0-based position in the recipe.</param>
    /// <param name="Step">The step.</param>
    /// <param name="Report">Its report: <see cref="PruneReport"/>, <see cref="MergeReport"/> or <see cref="QuantizeReport"/>.</param>
    /// <param name="Seconds">Wall time of the step.</param>
    public sealed record StepResult(int Index, CompressionStep Step, object Report, double Seconds);

    /// <summary>The input folder.</summary>
    public required string Model { get; init; }
    /// <summary>The output folder.</summary>
    public required string Output { get; init; }
    /// <summary>The checked plan.</summary>
    public required CompressionPlan Plan { get; init; }
    /// <summary>The steps, in order.</summary>
    public required IReadOnlyList<StepResult> Steps { get; init; }
    /// <summary>The output against the original, when the recipe asked.</summary>
    public EvaluationReport? Evaluation { get; init; }
    /// <summary>Calibration passes made (quantize's sensitivity pass, which also collects statistics, is not counted).</summary>
    public required int CalibrationPasses { get; init; }
    /// <summary>Calibration tokens drawn (once).</summary>
    public required long CalibrationTokens { get; init; }
    /// <summary>Router statistics of the original model, when a calibration pass over it was made.</summary>
    public CalibrationProfile? OriginalUsage { get; init; }
    /// <summary>Wall time of the whole run.</summary>
    public required double Seconds { get; init; }

    private static JsonObject StepJson(object report) => report switch
    {
        PruneReport p => p.ToJsonObject(),
        MergeReport m => m.ToJsonObject(),
        QuantizeReport q => q.ToJsonObject(),
        _ => new JsonObject(),
    };

    private static string StepMarkdown(object report) => report switch
    {
        PruneReport p => p.ToMarkdown(),
        MergeReport m => m.ToMarkdown(),
        QuantizeReport q => q.ToMarkdown(),
        _ => "",
    };

    /// <summary>The report as JSON.</summary>
    public JsonObject ToJsonObject() => new()
    {
        ["tool"] = "moe-compress compress",
        ["version"] = Quantizer.ToolVersion,
        ["model"] = Model,
        ["output"] = Output,
        ["plan"] = Plan.ToJsonObject(),
        ["calibration_passes"] = CalibrationPasses,
        ["calibration_tokens"] = CalibrationTokens,
        ["steps"] = new JsonArray(Steps.Select(s => (JsonNode)new JsonObject
        {
            ["step"] = s.Step.Kind,
            ["seconds"] = Math.Round(s.Seconds, 3),
            ["report"] = StepJson(s.Report),
        }).ToArray()),
        ["evaluation"] = Evaluation?.ToJsonObject(),
        ["seconds"] = Math.Round(Seconds, 3),
    };

    /// <summary>The report as Markdown: the plan, then each step's report, then the evaluation.</summary>
    public string ToMarkdown()
    {
        var sb = new StringBuilder();
        sb.Append(C, $"# compress: {Model} → {Output}\n\n");
        sb.Append(C, $"{Steps.Count} step(s) in {Seconds:0.0} s; {CalibrationPasses} calibration pass(es) over {CalibrationTokens:N0} calibration tokens drawn once.\n\n");
        sb.Append(Plan.ToMarkdown()).Append('\n');
        foreach (var s in Steps)
            sb.Append(C, $"## steps[{s.Index}]: {s.Step.Kind} ({s.Seconds:0.0} s)\n\n").Append(StepMarkdown(s.Report).TrimEnd()).Append("\n\n");
        if (Evaluation is not null) sb.Append("## End to end: the output against the original\n\n").Append(Evaluation.ToMarkdown().TrimEnd()).Append('\n');
        return sb.ToString();
    }

    /// <summary>report.html: expert usage before, each step's decisions (kept/removed/merged maps, bit allocation),
    /// expert usage of the quantized model, and the end-to-end evaluation.</summary>
    public HtmlReport ToHtml()
    {
        var html = new HtmlReport($"compress: {Model}");
        html.Summary("Run", [
            ("input", Model), ("output", Output), ("steps", string.Join(" → ", Steps.Select(s => s.Step.Kind))),
            ("calibration", $"{CalibrationTokens:N0} tokens drawn once, {CalibrationPasses} calibration pass(es)"),
            ("time", string.Create(C, $"{Seconds:0.0} s")),
        ]);
        if (OriginalUsage is not null) html.ExpertUsage("Expert usage of the original (calibration)", OriginalUsage);
        foreach (var s in Steps)
            switch (s.Report)
            {
                case PruneReport p: html.Pruning(p); break;
                case MergeReport m: html.Merging(m); break;
                case QuantizeReport q:
                    html.Quantization(q);
                    if (q.Usage is not null && s.Index > 0) html.ExpertUsage($"Expert usage after steps[{s.Index - 1}] (quantize's sensitivity pass)", q.Usage, "expert (index after the previous step)");
                    break;
            }
        if (Evaluation is not null) html.Evaluation("the output against the original", Evaluation);
        return html;
    }
}
