using System.Diagnostics;
using MoECompress.Compression.Calibration;
using MoECompress.Formats.Synthetic;

namespace MoECompress.Benchmarks;

/// <summary>
/// Calibration throughput and peak RSS on generated Mixtral-layout checkpoints with L and 4·L decoder layers, each run
/// in its own child process. Streaming keeps one layer resident, so peak memory should not grow with the layer count;
/// the benchmark prints both figures and their ratio (profiles hold statistics only, no Hessians).
/// </summary>
internal static class CalibrationBenchmark
{
    public const string ChildVerb = "calibrate-child";

    public static int Run(string[] args)
    {
        int layers = 4, hidden = 256, samples = 32, seqLen = 256;
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--layers": layers = int.Parse(args[++i]); break;
                case "--hidden": hidden = int.Parse(args[++i]); break;
                case "--samples": samples = int.Parse(args[++i]); break;
                case "--seq-len": seqLen = int.Parse(args[++i]); break;
                default: Console.Error.WriteLine($"calibrate: unknown option {args[i]}"); return 2;
            }
        }

        string root = Path.Combine(Path.GetTempPath(), "moe-bench-calib-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(root);
        try
        {
            string data = Path.Combine(root, "ids.jsonl");
            CalibrationBenchmarkFiles.WriteTokenData(data, samples * seqLen * 2, vocab: 256);
            var rows = new List<(int layers, long bytes, double tps, long rss)>();
            foreach (int l in new[] { layers, 4 * layers })
            {
                string model = Path.Combine(root, $"mixtral-{l}");
                var info = SyntheticCheckpoint.Write("mixtral", model, new SyntheticOptions { Layers = l, Hidden = hidden, Seed = 3 });
                // Synthetic checkpoints carry no tokenizer; the data is input_ids, but the calibrator opens one anyway.
                File.Copy(CalibrationBenchmarkFiles.MixtralTokenizer(), Path.Combine(model, "tokenizer.json"));
                var (tps, rss) = RunChild(model, data, Path.Combine(root, $"profile-{l}"), samples, seqLen);
                rows.Add((l, info.TotalBytes, tps, rss));
                Console.WriteLine($"{l,3} layers ({info.TotalBytes / 1e6:0.0} MB of weights): {tps:N0} tokens/s, peak RSS {rss / 1048576.0:0} MiB");
            }
            Console.WriteLine();
            Console.WriteLine($"tokens per run:        {samples} x {seqLen} = {samples * seqLen:N0} (hidden {hidden})");
            Console.WriteLine($"throughput ratio:      {rows[1].tps / rows[0].tps:0.00} ({4 * layers} vs {layers} layers; 0.25 = proportional to depth)");
            Console.WriteLine($"peak RSS ratio:        {rows[1].rss / (double)rows[0].rss:0.00} ({4 * layers} vs {layers} layers; weights grew {rows[1].bytes / (double)rows[0].bytes:0.00}x)");
            return 0;
        }
        finally
        {
            Directory.Delete(root, true);
        }
    }

    public static int RunChild(string[] args)
    {
        var result = Calibrator.Run(new CalibrateOptions
        {
            Model = args[0], Data = args[1], Out = args[2], Samples = int.Parse(args[3]), SeqLen = int.Parse(args[4]),
        });
        Console.WriteLine($"tokens_per_second={result.TokensPerSecond}");
        Console.WriteLine($"peak_rss_bytes={ProcessStats.PeakRssBytes()}");
        return 0;
    }

    private static (double tps, long rss) RunChild(string model, string data, string output, int samples, int seqLen)
    {
        var output_ = ChildProcess.Run(ChildVerb, model, data, output, samples.ToString(), seqLen.ToString());
        return (double.Parse(ChildProcess.Value(output_, "tokens_per_second")), long.Parse(ChildProcess.Value(output_, "peak_rss_bytes")));
    }
}
