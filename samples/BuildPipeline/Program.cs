// A build pipeline on the moe-compress library: prune 25% of the experts, quantize the result to 3 bits with GPTQ,
// measure it against the original on held-out text and write report.html — the steps `moe-compress prune` and
// `moe-compress quantize --eval` run, through the NuGet packages.
//
// usage: BuildPipeline <model> <calibration text> <held-out text> <output folder>
using MoECompress.Compression.Calibration;
using MoECompress.Compression.Evaluation;
using MoECompress.Compression.Pruning;
using MoECompress.Compression.Quantization;
using MoECompress.Compression.Reporting;
using MoECompress.Formats.Errors;

if (args.Length != 4)
{
    Console.Error.WriteLine("usage: BuildPipeline <model> <calibration text> <held-out text> <output folder>");
    return 2;
}
var (model, calibration, heldOut, output) = (args[0], args[1], args[2], args[3]);
var progress = new StderrLines();
var data = new ProfileRequest { Data = calibration, Samples = 8, SeqLen = 128 };
try
{
    var pruned = Path.Combine(output, "pruned");
    var prune = Pruner.Run(new PruneOptions { Model = model, Output = pruned, Ratio = 0.25, Profile = data, Overwrite = true }, progress);
    Console.WriteLine($"pruned     {prune.InputExperts} -> {prune.OutputExperts} experts per layer ({prune.Method})");

    var quantized = Path.Combine(output, "pruned-3bit");
    var quantize = await Quantizer.RunAsync(new QuantizeOptions
    {
        Model = pruned, Output = quantized, Bits = 3, GroupSize = 64, Profile = data, Overwrite = true,
    }, progress);
    Console.WriteLine($"quantized  {quantize.AverageBits:0.##} bits on average, {quantize.ActualBytes / 1e6:0.0} MB (input {quantize.InputBytes / 1e6:0.0} MB)");

    var eval = await Evaluator.RunAsync(new EvaluateOptions { Model = quantized, Base = model, Data = heldOut, MaxTokens = 1024 }, progress);
    var m = eval.Metrics;
    Console.WriteLine($"quality    perplexity {m.Perplexity:0.00} (original {m.BasePerplexity:0.00}), mean KL {m.MeanKl:0.0000}, top-1 {100 * m.Top1Agreement:0.0}%");

    var report = Path.Combine(output, HtmlReport.FileName);
    new HtmlReport("BuildPipeline sample: prune 25% + GPTQ 3 bits").Pruning(prune).Quantization(quantize).Evaluation("pruned + 3 bits", eval).Write(report);
    Console.WriteLine($"report     {report}");
    return 0;
}
catch (MoeCompressException ex)
{
    Console.Error.WriteLine($"error: {ex.Message}");
    return ex.ExitCode;
}

/// <summary>Progress messages as indented lines on stderr, in order.</summary>
internal sealed class StderrLines : IProgress<string>
{
    public void Report(string value) => Console.Error.WriteLine("  " + value);
}
