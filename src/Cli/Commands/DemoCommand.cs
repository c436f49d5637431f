using System.CommandLine;
using MoECompress.Cli.Rendering;
using MoECompress.Compression.Demo;
using MoECompress.Compression.Reporting;

namespace MoECompress.Cli.Commands;

/// <summary>`moe-compress demo`: calibrate the bundled demo model, compress it three ways and measure each against the original.</summary>
internal static class DemoCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var model = new Option<string?>("--model") { Description = "Model folder (default: the bundled demo model, models/moe-demo)" };
        var profile = new Option<string?>("--profile-out") { Description = "Keep the calibration profile in this folder" };
        var samples = new Option<int>("--samples") { Description = "Calibration sequences", DefaultValueFactory = _ => 16 };
        var tokens = new Option<int>("--tokens-per-domain") { Description = "Held-out tokens evaluated per domain", DefaultValueFactory = _ => 2048 };
        var output = new Option<string?>("--out") { Description = "Keep the pruned, merged and quantized checkpoints in this folder (default: temporary)" };
        var noCompress = new Option<bool>("--no-compress") { Description = "Only calibrate and evaluate the original" };
        var json = new Option<bool>("--json") { Description = "Print the result as JSON" };
        var reportDir = new Option<string?>("--report-dir") { Description = "Also write report.json, report.md and report.html (figures) into this folder" };
        var command = new Command("demo", "Calibrate the bundled demo model, prune, merge and quantize it, and compare each with the original on held-out text")
        {
            model, profile, samples, tokens, output, noCompress, json, reportDir,
        };
        command.SetAction(async (parse, ct) =>
        {
            OptionChecks.Positive(parse.GetValue(samples), "--samples");
            OptionChecks.Positive(parse.GetValue(tokens), "--tokens-per-domain");
            var report = await DemoRunner.RunAsync(new DemoOptions
            {
                Model = parse.GetValue(model),
                ProfileOut = parse.GetValue(profile),
                Samples = parse.GetValue(samples),
                MaxTokensPerDomain = parse.GetValue(tokens),
                OutputDir = parse.GetValue(output),
                Compress = !parse.GetValue(noCompress),
            }, ConsoleProgress.For(stderr), ct);
            var html = report.ToHtml();
            if (parse.GetValue(output) is { } outDir && Directory.Exists(outDir)) html.Write(Path.Combine(outDir, HtmlReport.FileName));
            if (parse.GetValue(reportDir) is { } dir) ReportFiles.Write(dir, report.ToJson(), report.ToText(), html);
            stdout.WriteLine(parse.GetValue(json) ? report.ToJson() : report.ToText());
            return 0;
        });
        return command;
    }
}
