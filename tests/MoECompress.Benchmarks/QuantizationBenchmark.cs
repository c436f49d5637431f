using System.Diagnostics;
using MoECompress.Compression.Pipeline;
using MoECompress.Compression.Quantization;
using MoECompress.Formats.Quantized;
using MoECompress.Formats.Safetensors;
using TorchSharp;
using static TorchSharp.torch;

namespace MoECompress.Benchmarks;

/// <summary>
/// The quantization kernels and the bit allocation: OR-Tools solve time of a DeepSeek-V3-sized allocation (58 layers ×
/// 256 experts × 5 widths, target under 2 s), RTN throughput in GB/s of bf16 weights, and GPTQ seconds per expert of
/// DeepSeek-V2-Lite shape (gate/up 1408×2048, down 2048×1408), with RTN on the same expert as the baseline.
/// </summary>
internal static class QuantizationBenchmark
{
    public static int Run(string[] args)
    {
        int layers = 58, experts = 256, widths = 5, rounds = 3, hidden = 2048, inter = 1408, bits = 4, group = 128;
        bool workingSet = false;
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--layers": layers = int.Parse(args[++i]); break;
                case "--experts": experts = int.Parse(args[++i]); break;
                case "--widths": widths = int.Parse(args[++i]); break;
                case "--rounds": rounds = int.Parse(args[++i]); break;
                case "--hidden": hidden = int.Parse(args[++i]); break;
                case "--intermediate": inter = int.Parse(args[++i]); break;
                case "--bits": bits = int.Parse(args[++i]); break;
                case "--gptq-memory": workingSet = true; break;
                default: Console.Error.WriteLine($"quantize: unknown option {args[i]}"); return 2;
            }
        }

        if (workingSet) return GptqWorkingSet(hidden, inter, new QuantizationScheme(bits, group));

        // 1. Bit allocation.
        BitAllocatorBenchmark.Run(4, 16, widths, 0); // warm-up: loads the OR-Tools natives
        foreach (var granularity in new[] { BitAllocationGranularity.Expert, BitAllocationGranularity.Layer })
        {
            var times = new List<double>();
            double gap = 0;
            for (int r = 0; r < rounds; r++)
            {
                var (s, g) = BitAllocatorBenchmark.Run(layers, experts, widths, seed: r, granularity);
                times.Add(s);
                gap = Math.Max(gap, g);
            }
            Console.WriteLine($"allocation {layers} layers x {experts} experts x {widths} widths ({granularity.ToString().ToLowerInvariant()}): " +
                              $"median {Median(times):0.000} s, max {times.Max():0.000} s over {rounds} seeds, worst gap {gap:0.####} (target < 2 s)");
        }

        // 2. RTN and GPTQ on one expert of DeepSeek-V2-Lite shape.
        torch.set_num_threads(Environment.ProcessorCount);
        var scheme = new QuantizationScheme(bits, group);
        using var gen = torch.manual_seed(7);
        var shapes = new[] { (inter, hidden), (inter, hidden), (hidden, inter) };
        var weights = shapes.Select(s => (randn(s.Item1, s.Item2) * 0.02f).to(ScalarType.BFloat16)).ToArray();
        var hessians = shapes.Select(s =>
        {
            using var x = randn(4096, s.Item2);
            return x.t().matmul(x).MoveToOuterDisposeScope();
        }).ToArray();
        long expertBytes = weights.Sum(w => w.NumberOfElements * 2);

        double Time(Action a)
        {
            var sw = Stopwatch.StartNew();
            a();
            return sw.Elapsed.TotalSeconds;
        }
        void Rtn()
        {
            foreach (var w in weights)
            {
                using var scope = NewDisposeScope();
                using var q = RtnQuantizer.Quantize(w.to(ScalarType.Float32), scheme);
            }
        }
        void Gptq()
        {
            for (int i = 0; i < weights.Length; i++)
            {
                using var scope = NewDisposeScope();
                using var q = GptqQuantizer.Quantize(weights[i].to(ScalarType.Float32), hessians[i], 4096, scheme);
            }
        }
        Rtn();
        Gptq();
        var rtn = Enumerable.Range(0, rounds).Select(_ => Time(Rtn)).ToList();
        var gptq = Enumerable.Range(0, rounds).Select(_ => Time(Gptq)).ToList();
        Console.WriteLine($"RTN  {scheme}: {expertBytes / Median(rtn) / 1e9:0.00} GB/s of bf16 weights ({Median(rtn) * 1000:0} ms per expert of {expertBytes / 1e6:0.0} MB)");
        Console.WriteLine($"GPTQ {scheme}: {Median(gptq):0.00} s per expert (gate/up {inter}x{hidden}, down {hidden}x{inter}; {Median(gptq) / Median(rtn):0}x RTN), " +
                          $"{expertBytes / Median(gptq) / 1e9:0.000} GB/s");
        Console.WriteLine($"threads: {torch.get_num_threads()}; peak RSS {ProcessStats.PeakRssBytes() / 1048576.0:0} MiB");
        foreach (var t in weights.Concat(hessians)) t.Dispose();
        return 0;
    }

    /// <summary>
    /// Peak memory of quantizing (GPTQ), packing and dequantizing one down_proj ([hidden, intermediate], an intermediate × intermediate Hessian) beside
    /// its inputs, against <see cref="MemoryPlan.GptqWorkingSetBytes"/>, the figure the memory planner budgets for it.
    /// </summary>
    private static int GptqWorkingSet(int hidden, int inter, QuantizationScheme scheme)
    {
        torch.set_num_threads(Environment.ProcessorCount);
        using var gen = torch.manual_seed(7);
        using var w = randn(hidden, inter) * 0.02f;
        const int tokens = 4096;
        using var hessian = zeros(inter, inter);
        for (int done = 0; done < tokens; done += 1024)
        {
            using var scope = NewDisposeScope();
            var x = randn(1024, inter);
            hessian.add_(x.t().matmul(x));
        }
        var inputs = ProcessStats.RssBytes();
        if (!ProcessStats.ResetPeak())
        {
            Console.Error.WriteLine("quantize --gptq-memory: cannot reset the peak RSS (/proc/self/clear_refs)");
            return 1;
        }
        var sw = Stopwatch.StartNew();
        // As the pipeline does with each projection: quantize, encode the packed GPTQ module, dequantize (the weights that
        // feed the next layer under compressed propagation).
        using (var q = GptqQuantizer.Quantize(w, hessian, tokens, scheme))
        {
            var encoded = QuantizedModuleWriter.Encode("model.layers.0.mlp.experts.0.down_proj", q, QuantizedFormat.Gptq, SafetensorsDType.BF16);
            using var dequantized = q.Dequantize();
            GC.KeepAlive(encoded);
        }
        var seconds = sw.Elapsed.TotalSeconds;
        var measured = ProcessStats.PeakRssBytes() - inputs;
        var predicted = MemoryPlan.GptqWorkingSetBytes(hidden, inter);
        Console.WriteLine($"GPTQ {scheme}, packed and dequantized, of one down_proj {hidden}x{inter} (Hessian {inter}x{inter}, {MemoryPlan.Format((long)inter * inter * 4)}): " +
                          $"{seconds:0.0} s; peak RSS above its inputs {MemoryPlan.Format(measured)}, planner's working set " +
                          $"{MemoryPlan.Format(predicted)} (measured / predicted {(double)measured / predicted:0.00}x); " +
                          $"threads {torch.get_num_threads()}");
        return 0;
    }

    private static double Median(List<double> values)
    {
        var s = values.Order().ToList();
        return s[s.Count / 2];
    }
}
