using System.CommandLine;
using MoECompress.Cli.Rendering;
using MoECompress.Compression.Evaluation;
using MoECompress.Compression.Reporting;

namespace MoECompress.Cli.Commands;

/// <summary>
/// `moe-compress eval &lt;model&gt; [--data F] [--base M] [--context C --stride S] [--json] [--report-dir D]`: sliding-window
/// perplexity, and against a base model mean KL, top-1 agreement and per-layer hidden-state error.
/// </summary>
internal static class EvalCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var model = new Argument<string>("model") { Description = "Model folder to evaluate" };
        var data = new Option<string?>("--data") { Description = "Held-out text file or folder (default: the bundled held-out text)" };
        var baseModel = new Option<string?>("--base") { Description = "Base model to compare against (same vocabulary)" };
        var context = new Option<int?>("--context") { Description = $"Window length in tokens (default {EvaluateOptions.DefaultContext})" };
        var stride = new Option<int?>("--stride") { Description = "Window stride in tokens (default context/2)" };
        var maxTokens = new Option<int?>("--max-tokens") { Description = "Use at most this many tokens of the text" };
        var skipPlan = new Option<string?>("--skip-plan") { Description = "Apply a dynamic expert-skipping plan (from skip-plan) to the model; the report gives the expert calls saved per layer" };
        var json = new Option<bool>("--json") { Description = "Print the report as JSON instead of Markdown" };
        var reportDir = new Option<string?>("--report-dir") { Description = "Also write report.json, report.md and report.html into this folder" };
        var command = new Command("eval", "Perplexity on held-out text; with --base, KL divergence, top-1 agreement and per-layer error")
        {
            model, data, baseModel, context, stride, maxTokens, skipPlan, json, reportDir,
        };
        command.SetAction(async (parse, ct) =>
        {
            if (parse.GetValue(context) is int c) OptionChecks.Positive(c, "--context");
            if (parse.GetValue(stride) is int s) OptionChecks.Positive(s, "--stride");
            if (parse.GetValue(maxTokens) is int m) OptionChecks.Positive(m, "--max-tokens");
            var report = await Evaluator.RunAsync(new EvaluateOptions
            {
                Model = parse.GetValue(model)!,
                Data = parse.GetValue(data),
                Base = parse.GetValue(baseModel),
                Context = parse.GetValue(context),
                Stride = parse.GetValue(stride),
                MaxTokens = parse.GetValue(maxTokens),
                SkipPlan = parse.GetValue(skipPlan),
            }, ConsoleProgress.For(stderr), ct);
            if (parse.GetValue(reportDir) is { } dir)
                ReportFiles.Write(dir, report.ToJson(), report.ToMarkdown(), new HtmlReport($"eval: {report.Model.Path}").Evaluation(Path.GetFileName(report.Model.Path), report));
            stdout.WriteLine(parse.GetValue(json) ? report.ToJson() : report.ToMarkdown());
            return 0;
        });
        return command;
    }
}
