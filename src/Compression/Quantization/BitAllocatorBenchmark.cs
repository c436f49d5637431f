using System.Diagnostics;

namespace MoECompress.Compression.Quantization;

/// <summary>
/// A synthetic bit-allocation instance for benchmarks: <c>layers × experts</c> DeepSeek-V3-sized experts (3 × 7168 × 2048
/// parameters) with skewed router frequencies, routing weights and errors that fall about 4× per extra bit (with noise),
/// allocated at an average budget halfway between the lowest and highest candidate width. Prints nothing.
/// </summary>
public static class BitAllocatorBenchmark
{
    /// <summary>The widths offered for a given count (1–5): {2}, {2,3}, {2,3,4}, {1,2,3,4}, {1,2,3,4,8}.</summary>
    public static IReadOnlyList<int> CandidatesFor(int widths) => widths switch
    {
        1 => [2],
        2 => [2, 3],
        3 => [2, 3, 4],
        4 => [1, 2, 3, 4],
        5 => [1, 2, 3, 4, 8],
        _ => throw new ArgumentOutOfRangeException(nameof(widths), widths, "1 to 5 widths"),
    };

    /// <summary>Random items of the benchmark (seeded).</summary>
    public static IReadOnlyList<BitAllocationItem> Items(int layers, int experts, int widths, int seed)
    {
        var candidates = CandidatesFor(widths);
        var rng = new Random(seed);
        const long parameters = 3L * 7168 * 2048;
        var items = new List<BitAllocationItem>(layers * experts);
        for (var l = 0; l < layers; l++)
        {
            // Zipf-like frequencies in a random order per layer.
            var raw = Enumerable.Range(1, experts).Select(r => 1.0 / Math.Pow(r, 0.8) * (0.5 + rng.NextDouble())).ToArray();
            rng.Shuffle(raw);
            var total = raw.Sum();
            for (var e = 0; e < experts; e++)
            {
                var phi = raw[e] / total * 8;
                var w = phi * (0.2 + 0.3 * rng.NextDouble());
                var scale = 0.05 * (0.5 + rng.NextDouble());
                var errors = candidates.ToDictionary(b => b, b => scale * Math.Pow(4, 2 - b) * (0.8 + 0.4 * rng.NextDouble()));
                items.Add(new BitAllocationItem(l, e, parameters, phi, w, errors));
            }
        }
        return items;
    }

    /// <summary>Builds an instance and allocates it with the default solver choice; returns wall seconds of
    /// <see cref="BitAllocator.Allocate"/> (model building and solving) and the reported optimality gap.</summary>
    public static (double Seconds, double Gap) Run(int layers, int experts, int widths, int seed,
        BitAllocationGranularity granularity = BitAllocationGranularity.Expert, BitAllocationSolver solver = BitAllocationSolver.Auto)
    {
        var candidates = CandidatesFor(widths);
        var items = Items(layers, experts, widths, seed);
        var options = new BitAllocatorOptions
        {
            Candidates = candidates,
            AverageBits = (candidates.Min() + candidates.Max()) / 2.0 + 0.01,
            Granularity = granularity,
            Solver = solver,
        };
        var sw = Stopwatch.StartNew();
        var result = BitAllocator.Allocate(items, options);
        return (sw.Elapsed.TotalSeconds, result.Gap);
    }
}
