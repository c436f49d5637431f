using System.Diagnostics;
using System.Globalization;
using MoECompress.Compression.Calibration;
using MoECompress.Compression.Merging;
using MoECompress.Compression.Pruning;
using MoECompress.Compression.Quantization;
using MoECompress.Formats.Synthetic;

namespace MoECompress.Benchmarks;

/// <summary>
/// Peak memory of the sequential pipeline at real per-layer widths: for each fixture (Mixtral-8x7B H 4096 / I 14336 /
/// 8 experts; Qwen3-30B-A3B H 2048 / I 768 / 128 experts top-8; DeepSeek-V2-Lite H 2048 / I 1408 / 64 + 2 shared,
/// first layer dense) it generates checkpoints with L and 4·L decoder layers (only L with <c>--one-size</c>) and runs calibrate, quantize (GPTQ) and
/// prune 25% each (and on request, <c>--step merge</c>, merge 25%) in its own child process, printing seconds, tokens/s, seconds per layer and peak RSS, the 4L/L peak
/// ratio (target ≤ 1.1) and the bound "one layer's expert weights in float32 + calibration hidden states + 1 GB".
/// </summary>
internal static class ScaleBenchmark
{
    public const string ChildVerb = "scale-child";

    private sealed record Fixture(string Name, string Preset, int Hidden, int Intermediate, int Experts, int TopK, int Heads, int KvHeads,
        int? HeadDim, int? DenseIntermediate);

    private static readonly Fixture[] Fixtures =
    [
        new("mixtral", "mixtral", 4096, 14336, 8, 2, 32, 8, null, null),
        new("qwen3-30b-a3b", "qwen3-moe", 2048, 768, 128, 8, 32, 4, 128, null),
        new("deepseek-v2-lite", "deepseek-v2-lite", 2048, 1408, 64, 6, 16, 16, null, 10944),
    ];

    public static int Run(string[] args)
    {
        int layers = 1, samples = 8, seqLen = 128;
        string method = "gptq", bits = "3", maxMemory = "16";
        bool mixed = false, oneSize = false;
        var names = new List<string>();
        var steps = new List<string>();
        string? dir = null;
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--fixture": names.Add(args[++i]); break;
                case "--layers": layers = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--samples": samples = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--seq-len": seqLen = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--method": method = args[++i]; break;
                case "--bits": bits = args[++i]; break;
                case "--mixed": mixed = true; break;
                case "--one-size": oneSize = true; break;
                case "--max-memory-gb": maxMemory = args[++i]; break;
                case "--step": steps.Add(args[++i]); break;
                case "--dir": dir = args[++i]; break;
                default: Console.Error.WriteLine($"scale: unknown option {args[i]}"); return 2;
            }
        }
        if (steps.Count == 0) steps = ["calibrate", "quantize", "prune"];
        var chosen = names.Count == 0 ? Fixtures : Fixtures.Where(f => names.Contains(f.Name)).ToArray();
        var root = dir ?? Path.Combine(Path.GetTempPath(), "moe-bench-scale-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(root);
        try
        {
            var data = Path.Combine(root, "ids.jsonl");
            CalibrationBenchmarkFiles.WriteTokenData(data, samples * seqLen * 2, vocab: 256);
            Console.WriteLine($"calibration: {samples} x {seqLen} tokens; quantize: {method}, {(mixed ? $"mixed {bits} bits" : $"uniform {bits} bits")}; --max-memory {maxMemory} GiB");
            Console.WriteLine();
            Console.WriteLine("| fixture | layers | checkpoint | step | seconds | s / layer | tokens/s | peak RSS |");
            Console.WriteLine("|---|---:|---:|---|---:|---:|---:|---:|");
            foreach (var f in chosen)
            {
                var peaks = new Dictionary<(string Step, int Layers), long>();
                foreach (var l in oneSize ? new[] { layers } : new[] { layers, 4 * layers })
                {
                    var model = Path.Combine(root, $"{f.Name}-{l}");
                    var info = SyntheticCheckpoint.Write(f.Preset, model, new SyntheticOptions
                    {
                        Layers = l, Hidden = f.Hidden, Intermediate = f.Intermediate, Experts = f.Experts, TopK = f.TopK, Heads = f.Heads,
                        KvHeads = f.KvHeads, HeadDim = f.HeadDim, DenseIntermediate = f.DenseIntermediate, Seed = 3,
                    });
                    File.Copy(CalibrationBenchmarkFiles.MixtralTokenizer(), Path.Combine(model, "tokenizer.json"));
                    foreach (var step in steps)
                    {
                        var output = Path.Combine(root, $"{f.Name}-{l}-{step}");
                        var result = ChildProcess.Run(ChildVerb, step, model, data, output, samples.ToString(CultureInfo.InvariantCulture),
                            seqLen.ToString(CultureInfo.InvariantCulture), method, bits, mixed.ToString(), maxMemory);
                        var seconds = double.Parse(ChildProcess.Value(result, "seconds"), CultureInfo.InvariantCulture);
                        var rss = long.Parse(ChildProcess.Value(result, "peak_rss_bytes"), CultureInfo.InvariantCulture);
                        peaks[(step, l)] = rss;
                        var tps = (double)samples * seqLen / seconds;
                        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                            $"| {f.Name} | {l} | {info.TotalBytes / 1e9:0.00} GB | {step} | {seconds:0.0} | {seconds / l:0.0} | {tps:N0} | {rss / 1e9:0.00} GB |"));
                        if (Directory.Exists(output)) Directory.Delete(output, recursive: true);
                    }
                    Directory.Delete(model, recursive: true);
                }
                long expertFloat32 = (long)f.Experts * 3 * f.Hidden * f.Intermediate * sizeof(float);
                long activations = (long)samples * seqLen * f.Hidden * sizeof(float);
                long bound = expertFloat32 + activations + (1L << 30);
                foreach (var step in steps)
                    Console.WriteLine(oneSize
                        ? string.Create(CultureInfo.InvariantCulture,
                            $"{f.Name} {step}: peak at {layers} layers {peaks[(step, layers)] / 1e9:0.00} GB vs bound {bound / 1e9:0.00} GB (no 4x-depth run: --one-size)")
                        : string.Create(CultureInfo.InvariantCulture,
                        $"{f.Name} {step}: peak RSS {4 * layers} vs {layers} layers = {peaks[(step, 4 * layers)] / (double)peaks[(step, layers)]:0.00}x (target <= 1.1); " +
                        $"peak at {4 * layers} layers {peaks[(step, 4 * layers)] / 1e9:0.00} GB vs bound {bound / 1e9:0.00} GB " +
                        $"(experts of one layer in float32 {expertFloat32 / 1e9:0.00} GB + hidden states {activations / 1e6:0} MB + 1 GB)"));
            }
            return 0;
        }
        finally
        {
            if (dir is null) Directory.Delete(root, recursive: true);
        }
    }

    public static int RunChild(string[] args)
    {
        var (step, model, data, output) = (args[0], args[1], args[2], args[3]);
        int samples = int.Parse(args[4], CultureInfo.InvariantCulture), seqLen = int.Parse(args[5], CultureInfo.InvariantCulture);
        var method = args[6] == "rtn" ? QuantizeMethod.Rtn : QuantizeMethod.Gptq;
        var bits = double.Parse(args[7], CultureInfo.InvariantCulture);
        var mixed = bool.Parse(args[8]);
        var maxMemory = (long)(double.Parse(args[9], CultureInfo.InvariantCulture) * (1L << 30));
        var profile = new ProfileRequest { Data = data, Samples = samples, SeqLen = seqLen };
        var clock = Stopwatch.StartNew();
        switch (step)
        {
            case "calibrate":
                Calibrator.Run(new CalibrateOptions { Model = model, Data = data, Out = output, Samples = samples, SeqLen = seqLen });
                break;
            case "quantize":
                Quantizer.Run(new QuantizeOptions
                {
                    Model = model, Output = output, Method = method, Bits = bits, Uniform = !mixed, Candidates = [2, 4], Profile = profile,
                    MaxMemoryBytes = maxMemory,
                }, new Stamped());
                break;
            case "prune":
                Pruner.Run(new PruneOptions { Model = model, Output = output, Ratio = 0.25, Profile = profile });
                break;
            case "merge":
                Merger.Run(new MergeOptions { Model = model, Output = output, Ratio = 0.25, Profile = profile });
                break;
            default: throw new ArgumentException($"unknown step {step}");
        }
        Console.WriteLine($"seconds={clock.Elapsed.TotalSeconds.ToString(CultureInfo.InvariantCulture)}");
        Console.WriteLine($"peak_rss_bytes={ProcessStats.PeakRssBytes()}");
        return 0;
    }

    /// <summary>Progress lines on stderr with a time stamp.</summary>
    private sealed class Stamped : IProgress<string>
    {
        public void Report(string value) => Console.Error.WriteLine($"[{DateTime.Now:HH:mm:ss}] {value}");
    }
}
