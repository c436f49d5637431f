using System.CommandLine;
using System.Text.Json.Nodes;
using MoECompress.Cli.Rendering;
using MoECompress.Compression.Calibration;
using MoECompress.Compression.Evaluation;
using MoECompress.Compression.Reporting;
using MoECompress.Formats.Errors;

namespace MoECompress.Cli.Commands;

/// <summary>
/// Options shared by prune, merge and quantize: where the calibration statistics come from, how much to remove, and
/// the optional evaluation of the written output against its input. Also writes the report next to the output.
/// </summary>
internal sealed class CompressionOptions
{
    public const string ReportJson = "compression-report.json";
    public const string ReportMarkdown = "compression-report.md";

    public Option<string?> Profile { get; } = new("--profile") { Description = "Calibration profile folder from `calibrate` (e.g. one calibrated on a task's text); default: calibrate now" };
    public Option<string?> Data { get; } = new("--data") { Description = "Calibration text when calibrating now (default: the bundled calibration set)" };
    public Option<int> Samples { get; } = new("--samples") { Description = "Calibration sequences when calibrating now (0 = every window)", DefaultValueFactory = _ => 128 };
    public Option<int> SeqLen { get; } = new("--seq-len") { Description = "Tokens per calibration sequence", DefaultValueFactory = _ => 512 };
    public Option<int> Seed { get; } = new("--seed") { Description = "Calibration sampling seed", DefaultValueFactory = _ => 0 };
    public Option<bool> Overwrite { get; } = new("--overwrite") { Description = "Replace the output folder if it exists" };
    public Option<bool> DryRun { get; } = new("--dry-run") { Description = "Compute and print the plan; write nothing" };
    public Option<bool> Eval { get; } = new("--eval") { Description = "After writing, measure perplexity and KL of the output against the input on held-out text" };
    public Option<string?> EvalData { get; } = new("--eval-data") { Description = "Held-out text for --eval (default: the bundled held-out text)" };
    public Option<int?> EvalTokens { get; } = new("--eval-tokens") { Description = "Use at most this many held-out tokens for --eval" };
    public Option<bool> Json { get; } = new("--json") { Description = "Print the report as JSON instead of Markdown" };
    public Option<string?> ReportDir { get; } = new("--report-dir") { Description = "Also write report.json and report.md into this folder" };

    public IEnumerable<Option> All => [Profile, Data, Samples, SeqLen, Seed, Overwrite, DryRun, Eval, EvalData, EvalTokens, Json, ReportDir];

    /// <summary>The options of commands that calibrate in memory and have no plan to print (substitute): all but --profile and --dry-run.</summary>
    public IEnumerable<Option> WithoutProfile => All.Where(o => o != Profile && o != DryRun);

    /// <summary>The calibration data options (--data, --samples, --seq-len, --seed) checked.</summary>
    public Compression.Data.CalibrationDataOptions DataOptions(ParseResult parse)
    {
        OptionChecks.Positive(parse.GetValue(SeqLen), "--seq-len");
        if (parse.GetValue(Samples) < 0) throw OptionChecks.Usage("--samples", "must be 0 or more");
        if (parse.GetValue(EvalTokens) is int t) OptionChecks.Positive(t, "--eval-tokens");
        return new() { Samples = parse.GetValue(Samples), SeqLen = parse.GetValue(SeqLen), Seed = parse.GetValue(Seed) };
    }

    public ProfileRequest ProfileRequest(ParseResult parse)
    {
        var data = DataOptions(parse);
        if (parse.GetValue(Eval) && parse.GetValue(DryRun)) throw OptionChecks.Usage("--eval", "cannot be combined with --dry-run (nothing is written)");
        return new ProfileRequest
        {
            Profile = parse.GetValue(Profile),
            Data = parse.GetValue(Data),
            Samples = data.Samples,
            SeqLen = data.SeqLen,
            Seed = data.Seed,
        };
    }

    /// <summary>Checks --ratio/--keep: exactly one, in range.</summary>
    public static void CheckReduction(double? ratio, int? keep)
    {
        if ((ratio is null) == (keep is null)) throw new MoeCompressException(ErrorKind.Usage, "give exactly one of --ratio (fraction of experts removed) and --keep (experts kept per layer)");
        if (ratio is { } r && !(r > 0 && r < 1)) throw OptionChecks.Usage("--ratio", $"{r} must be between 0 and 1 (exclusive)");
        if (keep is { } k && k < 1) throw OptionChecks.Usage("--keep", $"{k} must be at least 1");
    }

    /// <summary>
    /// Optionally evaluates the output against the input, writes the combined report into the output folder (and
    /// --report-dir), and prints it.
    /// </summary>
    public async Task<int> FinishAsync(ParseResult parse, string input, string? output, JsonObject compressionJson, string compressionMarkdown,
        TextWriter stdout, TextWriter stderr, CancellationToken ct, HtmlReport? html = null)
    {
        var json = new JsonObject { ["compression"] = compressionJson };
        var markdown = compressionMarkdown;
        if (output is not null && parse.GetValue(Eval))
        {
            var eval = await Evaluator.RunAsync(new EvaluateOptions
            {
                Model = output,
                Base = input,
                Data = parse.GetValue(EvalData),
                MaxTokens = parse.GetValue(EvalTokens),
            }, ConsoleProgress.For(stderr), ct);
            json["evaluation"] = JsonNode.Parse(eval.ToJson());
            markdown += Environment.NewLine + eval.ToMarkdown();
            html?.Evaluation("the output against the input", eval);
        }
        if (html is not null && parse.GetValue(Profile) is { } profile) html.ExpertUsage("Expert usage of the input (calibration profile)", CalibrationProfile.Load(profile));
        var text = json.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true });
        if (output is not null && Directory.Exists(output))
        {
            ReportFiles.WriteAtomic(Path.Combine(output, ReportJson), text);
            ReportFiles.WriteAtomic(Path.Combine(output, ReportMarkdown), markdown);
            html?.Write(Path.Combine(output, HtmlReport.FileName));
        }
        if (parse.GetValue(ReportDir) is { } dir) ReportFiles.Write(dir, text, markdown, html);
        stdout.WriteLine(parse.GetValue(Json) ? text : markdown);
        return 0;
    }
}
