using System.Diagnostics;
using System.Globalization;
using MoECompress.Compression;
using MoECompress.Compression.Data;
using MoECompress.Compression.Substitution;

namespace MoECompress.Benchmarks;

/// <summary>
/// Compressed-expert training on the bundled demo model (or --model): runs <see cref="Substituter.Run"/> into a
/// temporary folder and prints, per MoE layer, the training time, the token-steps per second and the block error before
/// and after, then the whole run's time (capture, propagation and writing included).
/// </summary>
internal static class SubstitutionBenchmark
{
    public static int Run(string[] args)
    {
        string? model = null, device = "auto";
        int aux = 1, steps = 60, batch = 1024, samples = 32, seqLen = 256;
        double lr = 0.03;
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--model": model = args[++i]; break;
                case "--device": device = args[++i]; break;
                case "--aux": aux = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--steps": steps = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--batch-tokens": batch = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--samples": samples = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--seq-len": seqLen = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--lr": lr = double.Parse(args[++i], CultureInfo.InvariantCulture); break;
                default: Console.Error.WriteLine($"substitute: unknown option {args[i]}"); return 2;
            }
        }
        model ??= BundledData.LocateDemoModel() ?? throw new InvalidOperationException("demo model not found; pass --model");
        var output = Path.Combine(Path.GetTempPath(), $"moe-bench-substitute-{Guid.NewGuid():N}");
        var training = new CompressedExpertTraining { Steps = steps, LearningRate = lr, BatchTokens = batch, Device = TrainingDevice.Resolve(device) };
        var clock = Stopwatch.StartNew();
        try
        {
            var report = Substituter.Run(new SubstituteOptions
            {
                Model = model,
                Output = output,
                Aux = aux,
                Training = training,
                DataOptions = new CalibrationDataOptions { Samples = samples, SeqLen = seqLen },
            });
            Console.WriteLine($"substitute {model}: aux {aux} of top-{report.TopK}, {report.CalibrationTokens:N0} calibration tokens, " +
                              $"{steps} steps x {batch} tokens per layer, lr {lr}, device {report.Device}, {Environment.ProcessorCount} cores");
            foreach (var l in report.Layers)
                Console.WriteLine($"layer {l.Layer}: {l.Seconds:F1} s training ({l.Seconds / Math.Max(1, l.Loss.Count) * 1000:F0} ms/step), " +
                                  $"{l.TokensPerSecond(batch):N0} token-steps/s, block error {l.InitialError:G4} -> {l.FinalError:G4}");
            Console.WriteLine($"total {clock.Elapsed.TotalSeconds:F1} s (training {report.Layers.Sum(l => l.Seconds):F1} s)");
            return 0;
        }
        finally
        {
            if (Directory.Exists(output)) Directory.Delete(output, recursive: true);
        }
    }
}
