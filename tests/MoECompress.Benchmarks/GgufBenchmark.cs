using System.Globalization;
using MoECompress.Compression;
using MoECompress.Compression.Data;
using MoECompress.Compression.Evaluation;
using MoECompress.Compression.Gguf;
using MoECompress.Formats.Gguf;

namespace MoECompress.Benchmarks;

/// <summary>
/// The README's GGUF table: the demo model exported as GGUF at uniform Q4_K, uniform Q4_0 and a mixed per-(layer,
/// projection) allocation at the size of the uniform Q4_K file, each read back by our engine and evaluated against
/// the original on every held-out domain (as the quality study evaluates GPTQ).
/// </summary>
internal static class GgufBenchmark
{
    public static int Run(string[] args)
    {
        var model = BundledData.LocateDemoModel() ?? throw new InvalidOperationException("demo model not found");
        var outDir = Path.Combine(Path.GetTempPath(), "moe-gguf-" + DateTime.UtcNow.ToString("yyyyMMdd-HHmmss", CultureInfo.InvariantCulture));
        int samples = 32, seqLen = 256, evalTokens = 2048;
        for (var i = 0; i < args.Length; i++)
            switch (args[i])
            {
                case "--out": outDir = args[++i]; break;
                case "--samples": samples = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--seq-len": seqLen = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--eval-tokens": evalTokens = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                default: Console.Error.WriteLine($"gguf: unknown option {args[i]}"); return 2;
            }
        Directory.CreateDirectory(outDir);
        var progress = new Progress(Console.Error);
        var data = new CalibrationDataOptions { Samples = samples, SeqLen = seqLen };
        var files = PerDomainEvaluation.DomainFiles(BundledData.LocateHeldOutText()!);
        var inputBytes = PerDomainEvaluation.TensorBytes(model);
        var rows = new List<string>();
        long? q4kSize = null;
        foreach (var (name, make) in new (string, Func<string, GgufExportOptions>)[]
                 {
                     ("uniform Q4_K", o => new GgufExportOptions { Model = model, Output = o, Uniform = GgmlType.Q4_K, DataOptions = data }),
                     ("mixed, size of uniform Q4_K", o => new GgufExportOptions { Model = model, Output = o, Size = q4kSize, OtherType = GgmlType.Q4_K, DataOptions = data }),
                     ("uniform Q4_0", o => new GgufExportOptions { Model = model, Output = o, Uniform = GgmlType.Q4_0, DataOptions = data }),
                 })
        {
            var path = Path.Combine(outDir, name.Replace(' ', '-').Replace(",", "") + ".gguf");
            var report = GgufExporter.Run(make(path), progress);
            q4kSize ??= report.ActualBytes;
            var evals = PerDomainEvaluation.Run(path, model, files, evalTokens, 256, progress);
            long tokens = evals.Sum(e => e.Report.Metrics.TokensScored);
            double nll = evals.Sum(e => e.Report.Metrics.MeanNll * e.Report.Metrics.TokensScored) / tokens;
            double kl = evals.Sum(e => (e.Report.Metrics.MeanKl ?? 0) * e.Report.Metrics.TokensScored) / tokens;
            double top1 = evals.Sum(e => (e.Report.Metrics.Top1Agreement ?? 1) * e.Report.Metrics.TokensScored) / tokens;
            var types = string.Join(", ", report.Tensors.Where(t => t.Name.Contains("_exps")).GroupBy(t => t.Type).Select(g => $"{g.Count()}×{g.Key.ToName()}"));
            rows.Add(string.Create(CultureInfo.InvariantCulture,
                $"| {name} | {report.ActualBytes / 1e6:0.0} | {(double)report.ActualBytes!.Value / inputBytes:0.000} | {Math.Exp(nll):0.00} | {kl:0.0000} | {top1:0.0%} | {report.ExpertBitsPerWeight:0.##} | {types} | {report.FallbackCount} | {report.Seconds["total"]:0} |"));
            Console.Error.WriteLine(rows[^1]);
        }
        Console.WriteLine($"input: {model} ({inputBytes / 1e6:0.0} MB bf16); {samples} × {seqLen} calibration tokens; {evalTokens} held-out tokens per domain, context 256");
        Console.WriteLine("| setting | size MB | × bf16 | PPL | KL | top-1 | expert bpw | expert tensor types | fallbacks | s |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|---:|---|---:|---:|");
        foreach (var r in rows) Console.WriteLine(r);
        return 0;
    }

    private sealed class Progress(TextWriter writer) : IProgress<string>
    {
        public void Report(string value) => writer.WriteLine($"[{DateTime.Now:HH:mm:ss}] {value}");
    }
}
