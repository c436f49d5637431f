using System.Diagnostics;
using MoECompress.Compression.Calibration;
using MoECompress.Compression.Merging;
using MoECompress.Compression.Pruning;
using MoECompress.Compression.Quantization;
using MoECompress.Formats.Quantized;
using MoECompress.Formats.Synthetic;

namespace MoECompress.Benchmarks;

/// <summary>
/// prune, merge and quantize of a generated Mixtral-layout checkpoint, each in its own child process (its own peak
/// RSS), as throughput ratios to `cp -r` of the same checkpoint measured in the same run (both followed by sync). The
/// calibration profile is made once beforehand and not timed; merge's router-row measurement pass and quantize's
/// per-expert error measurement are part of their times.
/// </summary>
internal static class CompressionBenchmark
{
    public const string ChildVerb = "compress-child";

    public static int Run(string[] args)
    {
        long size = 1_000_000_000;
        int samples = 8, seqLen = 128;
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--size": size = (long)(double.Parse(args[++i].TrimEnd('G', 'M', 'B', 'g', 'm', 'b')) * (args[i].ToUpperInvariant().EndsWith("GB") ? 1e9 : 1e6)); break;
                case "--samples": samples = int.Parse(args[++i]); break;
                case "--seq-len": seqLen = int.Parse(args[++i]); break;
                default: Console.Error.WriteLine($"compress: unknown option {args[i]}"); return 2;
            }
        }
        string root = Path.Combine(Path.GetTempPath(), "moe-bench-compress-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(root);
        try
        {
            string model = Path.Combine(root, "model"), data = Path.Combine(root, "ids.jsonl"), profile = Path.Combine(root, "profile");
            var info = SyntheticCheckpoint.Write("mixtral", model, new SyntheticOptions { TargetBytes = size, Seed = 5 });
            File.Copy(CalibrationBenchmarkFiles.MixtralTokenizer(), Path.Combine(model, "tokenizer.json"));
            CalibrationBenchmarkFiles.WriteTokenData(data, samples * seqLen * 4, vocab: 256);
            var sw = Stopwatch.StartNew();
            Calibrator.Run(new CalibrateOptions { Model = model, Data = data, Out = profile, Samples = samples, SeqLen = seqLen });
            Console.WriteLine($"checkpoint {info.TotalBytes / 1e9:0.00} GB ({info.TensorCount} tensors); profile of {samples}x{seqLen} tokens in {sw.Elapsed.TotalSeconds:0.0} s (not timed below)");
            foreach (var f in Directory.GetFiles(model)) using (var s = File.OpenRead(f)) s.CopyTo(Stream.Null, 16 << 20);

            double cp = Timed(() => { Shell("cp", "-r", model, Path.Combine(root, "cp")); Shell("sync"); });
            Directory.Delete(Path.Combine(root, "cp"), true);
            Console.WriteLine($"cp -r + sync: {cp:0.00} s ({info.TotalBytes / 1e9 / cp:0.00} GB/s)");
            foreach (var op in new[] { "prune-frequency", "prune-reap", "merge-average", "merge-subspace", "quantize-rtn-uniform4", "quantize-gptq-mixed3" })
            {
                string output = Path.Combine(root, op);
                long rss = 0;
                double t = Timed(() =>
                {
                    rss = long.Parse(ChildProcess.Value(ChildProcess.Run(ChildVerb, op, model, output, profile, data, seqLen.ToString()), "peak_rss_bytes"));
                    Shell("sync");
                });
                Console.WriteLine($"{op,-22} {t,6:0.00} s  {info.TotalBytes / 1e9 / t:0.00} GB/s of input  ratio {cp / t:0.00}x cp  peak RSS {rss / 1048576.0:0} MiB");
                Directory.Delete(output, true);
            }
            return 0;
        }
        finally
        {
            Directory.Delete(root, true);
        }
    }

    public static int RunChild(string[] args)
    {
        string op = args[0], model = args[1], output = args[2], profile = args[3], data = args[4];
        var request = new ProfileRequest { Profile = profile, Data = data, SeqLen = int.Parse(args[5]) };
        switch (op)
        {
            case "prune-frequency":
            case "prune-reap":
                Pruner.Run(new PruneOptions { Model = model, Output = output, Ratio = 0.25, Method = op["prune-".Length..], Profile = request });
                break;
            case "merge-average":
                Merger.Run(new MergeOptions { Model = model, Output = output, Ratio = 0.25, Method = MergeMethod.Average, Profile = request });
                break;
            case "merge-subspace":
                Merger.Run(new MergeOptions { Model = model, Output = output, Ratio = 0.25, Method = MergeMethod.Subspace, Profile = request });
                break;
            case "quantize-rtn-uniform4":
                Quantizer.Run(new QuantizeOptions { Model = model, Output = output, Bits = 4, Uniform = true, Method = QuantizeMethod.Rtn, Format = QuantizedFormat.Gptq, Profile = request });
                break;
            case "quantize-gptq-mixed3":
                Quantizer.Run(new QuantizeOptions { Model = model, Output = output, Bits = 3, Method = QuantizeMethod.Gptq, Format = QuantizedFormat.Gptq, Profile = request });
                break;
            default:
                throw new ArgumentException($"unknown operation {op}");
        }
        Console.WriteLine($"peak_rss_bytes={ProcessStats.PeakRssBytes()}");
        return 0;
    }

    private static double Timed(Action action)
    {
        var sw = Stopwatch.StartNew();
        action();
        return sw.Elapsed.TotalSeconds;
    }

    private static void Shell(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        p.WaitForExit();
        if (p.ExitCode != 0) throw new InvalidOperationException($"{file} failed with exit code {p.ExitCode}");
    }
}
