using System.CommandLine;
using System.Text.Json.Nodes;
using MoECompress.Cli.Rendering;
using MoECompress.Compression.Calibration;

namespace MoECompress.Cli.Commands;

/// <summary>
/// `moe-compress calibrate &lt;model&gt; [--data D] [--samples N] [--seq-len L] [--seed S] [--out P]`: runs calibration
/// text through the model one layer at a time and writes a calibration profile (router statistics, expert coverage,
/// super experts; no Hessians: those are collected per layer by the steps that need them).
/// </summary>
internal static class CalibrateCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var model = new Argument<string>("model") { Description = "Model folder (config.json, safetensors, tokenizer)" };
        var data = new Option<string?>("--data") { Description = "Calibration text: .txt, .jsonl (\"text\" or \"input_ids\") or a folder of them (default: the bundled calibration set)" };
        var samples = new Option<int>("--samples") { Description = "Number of sequences (0 = every non-overlapping window)", DefaultValueFactory = _ => 128 };
        var seqLen = new Option<int>("--seq-len") { Description = "Tokens per sequence", DefaultValueFactory = _ => 512 };
        var seed = new Option<int>("--seed") { Description = "Sampling seed", DefaultValueFactory = _ => 0 };
        var output = new Option<string?>("--out") { Description = "Profile folder (default: <model>-calibration beside the current folder)" };
        var overwrite = new Option<bool>("--overwrite") { Description = "Replace the profile folder if it exists" };
        var dump = new Option<bool>("--dump-router-logits") { Description = "Also write every token's raw router logits" };
        var cold = new Option<double?>("--cold-threshold") { Description = "Routed tokens below which an expert counts as cold (default max(16, 0.1·N·k/E))" };
        var json = new Option<bool>("--json") { Description = "Print the result as JSON" };
        var resume = new Option<bool>("--resume") { Description = "Continue an interrupted calibration from its journal beside the profile folder (same options); the statistics are byte-identical" };
        var microBatch = new Option<int>("--micro-batch") { Description = "Tokens pushed through a layer at once", DefaultValueFactory = _ => 2048 };
        var command = new Command("calibrate", "Run calibration text through the model layer by layer and write a calibration profile")
        {
            model, data, samples, seqLen, seed, output, overwrite, dump, cold, microBatch, resume, json,
        };
        command.SetAction(async (parse, ct) =>
        {
            OptionChecks.Positive(parse.GetValue(seqLen), "--seq-len");
            OptionChecks.Positive(parse.GetValue(microBatch), "--micro-batch");
            if (parse.GetValue(samples) < 0) throw OptionChecks.Usage("--samples", "must be 0 or more");
            var options = new CalibrateOptions
            {
                Model = parse.GetValue(model)!,
                Data = parse.GetValue(data),
                Samples = parse.GetValue(samples),
                SeqLen = parse.GetValue(seqLen),
                Seed = parse.GetValue(seed),
                Out = parse.GetValue(output),
                Overwrite = parse.GetValue(overwrite),
                DumpRouterLogits = parse.GetValue(dump),
                ColdThreshold = parse.GetValue(cold),
                MicroBatch = parse.GetValue(microBatch),
                Resume = parse.GetValue(resume),
            };
            var result = await Calibrator.RunAsync(options, ConsoleProgress.For(stderr), ct);
            var p = result.Profile;
            if (parse.GetValue(json))
            {
                stdout.WriteLine(ResultJson.Write(new JsonObject
                {
                    ["profile"] = result.Directory,
                    ["tokens"] = p.Tokens,
                    ["seconds"] = Math.Round(result.Elapsed.TotalSeconds, 2),
                    ["tokens_per_second"] = Math.Round(result.TokensPerSecond, 1),
                    ["moe_layers"] = p.Layers.Count,
                    ["cold_experts"] = new JsonArray(p.Coverage.ColdExperts.Select(e => (JsonNode?)new JsonObject
                    {
                        ["layer"] = e.Layer, ["expert"] = e.Expert, ["routed_tokens"] = e.RoutedTokens,
                    }).ToArray()),
                    ["unused_experts"] = p.Coverage.UnusedExperts,
                    ["super_experts"] = new JsonArray(p.SuperExperts.Experts.Select(e => (JsonNode?)$"L{e.Layer}/E{e.Expert}").ToArray()),
                }));
                return 0;
            }
            stdout.WriteLine($"profile    {result.Directory}");
            stdout.WriteLine($"tokens     {p.Tokens:N0} in {result.Elapsed.TotalSeconds:0.0} s ({result.TokensPerSecond:N0} tokens/s)");
            stdout.WriteLine($"layers     {p.Layers.Count} MoE layers profiled");
            stdout.WriteLine($"cold       {p.Coverage.ColdExperts.Count} cold expert(s) (< {p.Coverage.ColdThreshold:0.#} routed tokens), {p.Coverage.UnusedExperts} never routed");
            stdout.WriteLine($"super      {p.SuperExperts.Experts.Count} super expert(s)" +
                (p.SuperExperts.Experts.Count == 0 ? "" : ": " + string.Join(", ", p.SuperExperts.Experts.Select(s => $"L{s.Layer}/E{s.Expert}"))));
            return 0;
        });
        return command;
    }
}
