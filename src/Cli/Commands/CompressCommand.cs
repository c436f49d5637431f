using System.CommandLine;
using System.Text.Json;
using MoECompress.Cli.Rendering;
using MoECompress.Compression.Pipeline;

namespace MoECompress.Cli.Commands;

/// <summary>
/// `moe-compress compress &lt;in&gt; &lt;out&gt; --recipe recipe.yaml [--dry-run]`: runs a recipe of prune / merge / quantize
/// steps with one draw of calibration tokens, writing one checkpoint and one report.
/// </summary>
internal static class CompressCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var input = new Argument<string>("in") { Description = "Model folder to compress (never modified)" };
        var output = new Argument<string?>("out") { Description = "Folder of the compressed checkpoint (not needed with --dry-run)", Arity = ArgumentArity.ZeroOrOne };
        var recipe = new Option<string>("--recipe") { Description = "Recipe file: YAML (or JSON when it ends in .json) with calibration, steps and evaluate", Required = true };
        var dryRun = new Option<bool>("--dry-run") { Description = "Check the recipe against the model and print the plan; write nothing" };
        var overwrite = new Option<bool>("--overwrite") { Description = "Replace the output folder if it exists" };
        var json = new Option<bool>("--json") { Description = "Print the report (or plan) as JSON instead of Markdown" };
        var reportDir = new Option<string?>("--report-dir") { Description = "Also write report.json, report.md and report.html into this folder" };
        var command = new Command("compress", "Run a recipe of prune / merge / quantize steps: one calibration draw, one checkpoint, one report")
        {
            input, output, recipe, dryRun, overwrite, json, reportDir,
        };
        command.SetAction(async (parse, ct) =>
        {
            var pipeline = new CompressionPipeline
            {
                Model = parse.GetValue(input)!,
                Output = parse.GetValue(output),
                Recipe = CompressionRecipe.Load(parse.GetValue(recipe)!),
                Overwrite = parse.GetValue(overwrite),
            };
            var indented = new JsonSerializerOptions { WriteIndented = true };
            if (parse.GetValue(dryRun))
            {
                var plan = await Task.Run(() => pipeline.Plan(ct), ct);
                await stdout.WriteLineAsync(parse.GetValue(json) ? plan.ToJsonObject().ToJsonString(indented) : plan.ToMarkdown());
                return 0;
            }
            if (pipeline.Output is null) throw OptionChecks.Usage("out", "give the output folder (or --dry-run)");
            var report = await pipeline.RunAsync(ConsoleProgress.For(stderr), ct);
            var text = report.ToJsonObject().ToJsonString(indented);
            var markdown = report.ToMarkdown();
            if (parse.GetValue(reportDir) is { } dir) ReportFiles.Write(dir, text, markdown, report.ToHtml());
            await stdout.WriteLineAsync(parse.GetValue(json) ? text : markdown);
            return 0;
        });
        return command;
    }
}
