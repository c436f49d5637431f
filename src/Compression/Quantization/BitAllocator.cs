using System.Diagnostics;
using MoECompress.Formats.Errors;

namespace MoECompress.Compression.Quantization;

/// <summary>
/// Mixed-precision bit allocation over routed experts (MC-MoE's pre-loading mixed-precision quantization, PMQ): each
/// expert i gets one width b from the candidates, with cost c_ib = φ_i^α · w_i^β · ε_ib^γ (φ frequency, w routing
/// weight, ε the MoE-block output error with expert i alone quantized to b bits), minimising Σ c_ib x_ib subject to
/// Σ_b x_ib = 1 and Σ size_ib x_ib ≤ budget, where size is b × params (an average-bits budget) or stored bytes
/// including scales and zero points (a byte budget). With <see cref="BitAllocationGranularity.Layer"/> all experts of a
/// layer share one width (cost and size summed over the layer).
/// </summary>
/// <remarks>
/// The problem is a multiple-choice knapsack. Small instances are solved exactly as a MIP (OR-Tools SCIP); large ones
/// through their LP relaxation (GLOP), whose basic optimum splits at most one group between two widths: that group takes
/// the smaller one, the budget left over is spent greedily on the upgrades that save most cost per unit of size, and the
/// LP optimum bounds the gap. Widths that another width of the same item beats on both cost and size are removed first.
/// </remarks>
public static class BitAllocator
{
    /// <summary>c = φ^α · w^β · ε^γ for one item at one width.</summary>
    public static double Cost(BitAllocationItem item, int bits, BitAllocatorOptions options)
    {
        ArgumentNullException.ThrowIfNull(item);
        ArgumentNullException.ThrowIfNull(options);
        if (!item.Errors.TryGetValue(bits, out var error))
            throw new ArgumentException($"layer {item.Layer} expert {item.Expert}: no error measured at {bits} bits", nameof(bits));
        return Math.Pow(item.Frequency, options.Alpha) * Math.Pow(item.RoutingWeight, options.Beta) * Math.Pow(error, options.Gamma);
    }

    /// <summary>Chooses one width per item (or per layer) within the budget at the least total cost.</summary>
    /// <exception cref="MoeCompressException">Usage: bad options; Infeasible: the budget is below every item at its
    /// lowest width (the message names the budget option and the minimum).</exception>
    /// <exception cref="ArgumentException">An item lacks an error or byte count for a candidate width, or has invalid values.</exception>
    public static BitAllocation Allocate(IReadOnlyList<BitAllocationItem> items, BitAllocatorOptions options,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(items);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var sw = Stopwatch.StartNew();
        var candidates = options.Candidates.Order().ToArray();
        var bytesMode = options.BudgetBytes is not null;
        CheckItems(items, candidates, bytesMode);
        if (items.Count == 0) throw new ArgumentException("no items to allocate", nameof(items));

        double Size(BitAllocationItem item, int b) => bytesMode ? item.Bytes![b] : (double)b * item.Parameters;
        var totalParams = items.Sum(i => (double)i.Parameters);
        var budget = bytesMode ? options.BudgetBytes!.Value - (double)options.FixedBytes : options.AverageBits!.Value * totalParams;
        var layerMode = options.Granularity == BitAllocationGranularity.Layer;

        // Groups: one per item, or one per layer; groupOf maps each item to its group.
        var groupOf = new int[items.Count];
        var groups = new List<BitAllocationProblem.Option[]>(layerMode ? 64 : items.Count);
        var pinned = 0;
        if (layerMode)
        {
            var index = new Dictionary<int, int>();
            for (var n = 0; n < items.Count; n++)
            {
                if (!index.TryGetValue(items[n].Layer, out var g))
                {
                    index[items[n].Layer] = g = groups.Count;
                    groups.Add(candidates.Select(b => new BitAllocationProblem.Option(b, 0, 0)).ToArray());
                }
                groupOf[n] = g;
                var sums = groups[g];
                for (var j = 0; j < candidates.Length; j++)
                {
                    var b = candidates[j];
                    sums[j] = sums[j] with { Cost = sums[j].Cost + Cost(items[n], b, options), Size = sums[j].Size + Size(items[n], b) };
                }
            }
        }
        else
        {
            for (var n = 0; n < items.Count; n++)
            {
                groupOf[n] = n;
                var item = items[n];
                if (item.FixedBits is { } fixedBits)
                {
                    pinned++;
                    groups.Add([new BitAllocationProblem.Option(fixedBits, Cost(item, fixedBits, options), Size(item, fixedBits))]);
                    continue;
                }
                var choices = new BitAllocationProblem.Option[candidates.Length];
                for (var j = 0; j < candidates.Length; j++)
                    choices[j] = new BitAllocationProblem.Option(candidates[j], Cost(item, candidates[j], options), Size(item, candidates[j]));
                groups.Add(choices);
            }
        }

        var problem = new BitAllocationProblem(groups, budget);
        if (problem.MinimumSize > budget + 1e-12 * Math.Abs(budget))
            throw Infeasible(items, options, candidates, problem.MinimumSize, totalParams, bytesMode);
        cancellationToken.ThrowIfCancellationRequested();

        var solution = problem.Solve(options.Solver, options.ExactMaxVariables, options.TimeLimitSeconds, cancellationToken);
        var widthsOut = new int[items.Count];
        for (var n = 0; n < items.Count; n++) widthsOut[n] = problem.Chosen(groupOf[n], solution.Choice[groupOf[n]]).Width;

        var objective = items.Select((item, n) => Cost(item, widthsOut[n], options)).Sum();
        var used = items.Select((item, n) => Size(item, widthsOut[n])).Sum() + (bytesMode ? options.FixedBytes : 0);
        var averageBits = items.Select((item, n) => (double)widthsOut[n] * item.Parameters).Sum() / totalParams;
        return new BitAllocation
        {
            Widths = widthsOut,
            Objective = objective,
            LowerBound = Math.Min(solution.LowerBound, objective),
            Status = solution.Status,
            Method = solution.Method,
            Seconds = sw.Elapsed.TotalSeconds,
            Variables = problem.Variables,
            Decisions = problem.Groups,
            Used = used,
            Budget = bytesMode ? options.BudgetBytes!.Value : budget,
            Unit = bytesMode ? "bytes" : "bits",
            AverageBits = averageBits,
            Pinned = layerMode ? 0 : pinned,
        };
    }

    private static void CheckItems(IReadOnlyList<BitAllocationItem> items, int[] candidates, bool bytesMode)
    {
        foreach (var item in items)
        {
            var who = $"layer {item.Layer} expert {item.Expert}";
            if (item.Parameters <= 0) throw new ArgumentException($"{who}: parameters must be positive", nameof(items));
            if (!double.IsFinite(item.Frequency) || item.Frequency < 0 || !double.IsFinite(item.RoutingWeight) || item.RoutingWeight < 0)
                throw new ArgumentException($"{who}: frequency and routing weight must be finite and ≥ 0", nameof(items));
            foreach (var b in candidates)
            {
                if (!item.Errors.TryGetValue(b, out var e))
                    throw new ArgumentException($"{who}: no error measured at {b} bits", nameof(items));
                if (!double.IsFinite(e) || e < 0)
                    throw new ArgumentException($"{who}: error at {b} bits is {e}; it must be finite and ≥ 0", nameof(items));
                if (bytesMode && (item.Bytes is null || !item.Bytes.TryGetValue(b, out var bytes) || bytes <= 0))
                    throw new ArgumentException($"{who}: a byte budget needs the stored bytes at {b} bits", nameof(items));
            }
            if (item.FixedBits is { } f && !candidates.Contains(f))
                throw new ArgumentException($"{who}: pinned width {f} is not a candidate ({string.Join(", ", candidates)})", nameof(items));
        }
        if (items.Select(i => (i.Layer, i.Expert)).Distinct().Count() != items.Count)
            throw new ArgumentException("an expert appears twice", nameof(items));
    }

    private static MoeCompressException Infeasible(IReadOnlyList<BitAllocationItem> items, BitAllocatorOptions options,
        int[] candidates, double minimumSize, double totalParams, bool bytesMode)
    {
        var pins = options.Granularity == BitAllocationGranularity.Expert && items.Any(i => i.FixedBits is not null)
            ? $" ({items.Count(i => i.FixedBits is not null)} pinned experts at their fixed width)" : "";
        if (bytesMode)
        {
            var minimum = (long)Math.Ceiling(minimumSize) + options.FixedBytes;
            return new MoeCompressException(ErrorKind.Infeasible,
                $"{options.BudgetOption} {options.BudgetBytes}: below the smallest possible output, {minimum} bytes " +
                $"(every expert at {candidates[0]} bits{pins} plus {options.FixedBytes} bytes of other tensors)");
        }
        var minBits = minimumSize / totalParams;
        return new MoeCompressException(ErrorKind.Infeasible,
            $"{options.BudgetOption} {options.AverageBits}: below the smallest possible average, {Math.Ceiling(minBits * 1000) / 1000:0.###} bits " +
            $"(every expert at {candidates[0]} bits{pins}); raise it or add a lower candidate width");
    }
}
