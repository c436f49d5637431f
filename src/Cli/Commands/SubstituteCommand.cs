using System.CommandLine;
using MoECompress.Cli.Rendering;
using MoECompress.Compression.Substitution;

namespace MoECompress.Cli.Commands;

/// <summary>
/// `moe-compress substitute &lt;in&gt; &lt;out&gt; --aux N [--steps S] [--lr R] [--device cpu|cuda|auto] [--dtype T]
/// [--export compressed-experts|reduced-topk]`: compressed-expert substitution (fewer experts computed per token).
/// </summary>
internal static class SubstituteCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var input = new Argument<string>("in") { Description = "Model folder (never modified)" };
        var output = new Argument<string>("out") { Description = "Folder of the output checkpoint" };
        var aux = new Option<int>("--aux") { Description = "Experts per token replaced by compressed experts (1 ≤ N < top-k)", DefaultValueFactory = _ => 1 };
        var steps = new Option<int>("--steps") { Description = "Adam steps per MoE layer", DefaultValueFactory = _ => 200 };
        var lr = new Option<double>("--lr") { Description = "Learning rate", DefaultValueFactory = _ => 0.01 };
        var batch = new Option<int>("--batch-tokens") { Description = "Calibration tokens per training step", DefaultValueFactory = _ => 4096 };
        var maxTokens = new Option<int>("--max-train-tokens") { Description = "Calibration tokens kept per layer for training (evenly spaced)", DefaultValueFactory = _ => 32_768 };
        var device = new Option<string>("--device") { Description = "Training device: auto (CUDA when TorchSharp sees one), cpu or cuda", DefaultValueFactory = _ => "auto" };
        var dtype = new Option<string>("--dtype") { Description = "Storage type of the vectors: f32, bf16 or f16", DefaultValueFactory = _ => "f32" };
        var export = new Option<string>("--export")
        {
            Description = "compressed-experts (trained vectors; runs in moe-compress only) or reduced-topk (standard checkpoint with top-k lowered by N, the baseline)",
            DefaultValueFactory = _ => "compressed-experts",
        };
        var shared = new CompressionOptions();
        var command = new Command("substitute", "Replace the last N of each token's top-k experts by trained compressed experts (fewer active parameters)")
        {
            input, output, aux, steps, lr, batch, maxTokens, device, dtype, export,
        };
        foreach (var o in shared.WithoutProfile) command.Options.Add(o);
        command.SetAction(async (parse, ct) =>
        {
            var options = new SubstituteOptions
            {
                Model = parse.GetValue(input)!,
                Output = parse.GetValue(output)!,
                Aux = parse.GetValue(aux),
                Export = OptionChecks.ParseEnum<SubstituteExport>(parse.GetValue(export)!, "--export"),
                Training = new CompressedExpertTraining
                {
                    Steps = parse.GetValue(steps),
                    LearningRate = parse.GetValue(lr),
                    BatchTokens = parse.GetValue(batch),
                    Seed = parse.GetValue(shared.Seed),
                    Device = TrainingDevice.Resolve(parse.GetValue(device)),
                },
                VectorDType = OptionChecks.ParseFloatDType(parse.GetValue(dtype)!, "--dtype"),
                Data = parse.GetValue(shared.Data),
                DataOptions = shared.DataOptions(parse),
                MaxTrainTokens = parse.GetValue(maxTokens),
                Overwrite = parse.GetValue(shared.Overwrite),
            };
            var report = await Task.Run(() => Substituter.Run(options, ConsoleProgress.For(stderr), ct), ct);
            return await shared.FinishAsync(parse, options.Model, report.Output, report.ToJsonObject(), report.ToMarkdown(), stdout, stderr, ct);
        });
        return command;
    }
}
