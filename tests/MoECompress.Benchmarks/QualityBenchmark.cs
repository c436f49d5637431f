using MoECompress.Compression.Study;

namespace MoECompress.Benchmarks;

/// <summary>
/// The quality tables of the README in one run on the bundled demo model (<see cref="QualityStudy"/>): every pruning
/// method and both merging methods at 25% and 50% fewer experts, task-adaptive pruning, uniform vs mixed-precision
/// quantization; each output evaluated against the original on every held-out domain.
/// </summary>
internal static class QualityBenchmark
{
    public static int Run(string[] args)
    {
        var options = new QualityStudyOptions { Output = Path.Combine(Path.GetTempPath(), "moe-quality-" + DateTime.UtcNow.ToString("yyyyMMdd-HHmmss")) };
        var sections = new List<string>();
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--out": options = options with { Output = args[++i] }; break;
                case "--model": options = options with { Model = args[++i] }; break;
                case "--samples": options = options with { Samples = int.Parse(args[++i]) }; break;
                case "--seq-len": options = options with { SeqLen = int.Parse(args[++i]) }; break;
                case "--eval-tokens": options = options with { EvalTokensPerDomain = int.Parse(args[++i]) }; break;
                case "--task-domain": options = options with { TaskDomain = args[++i] }; break;
                case "--section": sections.Add(args[++i]); break;
                case "--keep": options = options with { KeepCheckpoints = true }; break;
                default: Console.Error.WriteLine($"quality: unknown option {args[i]}"); return 2;
            }
        }
        if (sections.Count > 0) options = options with { Sections = sections };
        var report = QualityStudy.Run(options, new SynchronousProgress(Console.Error));
        Console.WriteLine(report.ToMarkdown());
        Console.WriteLine($"report: {Path.Combine(Path.GetFullPath(options.Output), "quality-report.md")}");
        return 0;
    }

    private sealed class SynchronousProgress(TextWriter writer) : IProgress<string>
    {
        public void Report(string value) => writer.WriteLine($"[{DateTime.Now:HH:mm:ss}] {value}");
    }
}
