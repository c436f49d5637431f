// A build pipeline on the moe-compress library: run a compression recipe (prune 25% + GPTQ 3 bits + evaluation
// against the original, see recipe.yaml) through the NuGet packages — what `moe-compress compress --recipe` does.
// The same recipe as C# objects:
//   new CompressionRecipe { Steps = [new PruneStep { Ratio = 0.25 }, new QuantizeStep { Bits = 3, GroupSize = 64 }],
//                           Evaluate = new EvaluationSettings { Tokens = 1024 } }
//
// usage: BuildPipeline <model> <recipe.yaml> <output folder>
using MoECompress.Compression;
using MoECompress.Compression.Pipeline;
using MoECompress.Compression.Pruning;
using MoECompress.Compression.Quantization;
using MoECompress.Compression.Reporting;
using MoECompress.Formats.Errors;

// tcmalloc when installed (re-executes this program once), as the CLI does: flat resident memory across layers.
if (NativeAllocator.Configure(args) is int childExit) return childExit;
if (args.Length != 3)
{
    Console.Error.WriteLine("usage: BuildPipeline <model> <recipe.yaml> <output folder>");
    return 2;
}
var (model, recipeFile, output) = (args[0], args[1], args[2]);
try
{
    var pipeline = new CompressionPipeline { Model = model, Output = output, Recipe = CompressionRecipe.Load(recipeFile), Overwrite = true };
    Console.WriteLine(pipeline.Plan().ToMarkdown());   // checked against the model's config before any work
    using var cancel = new CancellationTokenSource();
    Console.CancelKeyPress += (_, e) => { e.Cancel = true; cancel.Cancel(); };
    var report = await pipeline.RunAsync(new StageLines(), cancel.Token);

    foreach (var step in report.Steps)
        Console.WriteLine(step.Report switch
        {
            PruneReport p => $"pruned     {p.InputExperts} -> {p.OutputExperts} experts per layer ({p.Method})",
            QuantizeReport q => $"quantized  {q.AverageBits:0.##} bits on average, {q.ActualBytes / 1e6:0.0} MB (input {q.InputBytes / 1e6:0.0} MB)",
            _ => step.Step.Kind,
        });
    Console.WriteLine($"calibration passes: {report.CalibrationPasses}");
    if (report.Evaluation?.Metrics is { } m)
        Console.WriteLine($"quality    perplexity {m.Perplexity:0.00} (original {m.BasePerplexity:0.00}), mean KL {m.MeanKl:0.0000}, top-1 {100 * m.Top1Agreement:0.0}%");
    Console.WriteLine($"report     {Path.Combine(report.Output, HtmlReport.FileName)}");
    return 0;
}
catch (MoeCompressException ex)
{
    Console.Error.WriteLine($"error: {ex.Message}");
    return ex.ExitCode;
}
catch (OperationCanceledException)
{
    Console.Error.WriteLine("cancelled; nothing was written");
    return 130;
}

/// <summary>Structured progress as lines on stderr: one per pipeline stage, then the stage's messages indented.</summary>
internal sealed class StageLines : IProgress<ProgressUpdate>
{
    public void Report(ProgressUpdate value) =>
        Console.Error.WriteLine(value.Step is not null ? value.Message : $"  [{value.Stage}{(value.Layer is { } l ? $" layer {l}" : "")}] {value.Message}");
}
