using System.Text.Json.Nodes;

namespace MoECompress.Compression.Quantization;

/// <summary>
/// The result of <see cref="BitAllocator.Allocate"/>: one width per item (in the items' order), the objective
/// Σ c_ib x_ib, a lower bound on the optimum (the LP bound, or the MIP's best bound) and how it was found.
/// </summary>
public sealed record BitAllocation
{
    /// <summary>Chosen width of each item, in the order the items were given.</summary>
    public required IReadOnlyList<int> Widths { get; init; }
    /// <summary>Σ c over the chosen widths (cost φ^α · w^β · ε^γ).</summary>
    public required double Objective { get; init; }
    /// <summary>A lower bound on the optimal objective (LP relaxation or the MIP's bound; equal to the objective when optimal).</summary>
    public required double LowerBound { get; init; }
    /// <summary>(Objective − LowerBound) / max(|Objective|, tiny): 0 when proven optimal.</summary>
    public double Gap => Objective <= LowerBound ? 0 : (Objective - LowerBound) / Math.Max(Math.Abs(Objective), 1e-300);
    /// <summary>How good the solution is known to be.</summary>
    public required BitAllocationStatus Status { get; init; }
    /// <summary>What solved it ("SCIP", "CBC", "GLOP + rounding", "cheapest widths fit", ...).</summary>
    public required string Method { get; init; }
    /// <summary>Wall-clock seconds of the allocation (model building and solving).</summary>
    public required double Seconds { get; init; }
    /// <summary>Binary variables of the model after removing dominated widths.</summary>
    public required int Variables { get; init; }
    /// <summary>Decisions made (experts, or layers with <see cref="BitAllocationGranularity.Layer"/>).</summary>
    public required int Decisions { get; init; }
    /// <summary>The budget's measure used by the chosen widths (bits, or bytes including <see cref="BitAllocatorOptions.FixedBytes"/>).</summary>
    public required double Used { get; init; }
    /// <summary>The budget (bits, or bytes).</summary>
    public required double Budget { get; init; }
    /// <summary>"bits" or "bytes".</summary>
    public required string Unit { get; init; }
    /// <summary>Σ b·params / Σ params over the items.</summary>
    public required double AverageBits { get; init; }
    /// <summary>Items pinned by <see cref="BitAllocationItem.FixedBits"/> whose pin was honoured.</summary>
    public int Pinned { get; init; }

    /// <summary>How many items got each width (ascending width).</summary>
    public IReadOnlyDictionary<int, int> WidthCounts() =>
        Widths.GroupBy(w => w).OrderBy(g => g.Key).ToDictionary(g => g.Key, g => g.Count());

    /// <summary>The solver summary as JSON (not the per-item widths).</summary>
    public JsonObject ToJsonObject() => new()
    {
        ["status"] = Status.ToString().ToLowerInvariant(),
        ["method"] = Method,
        ["objective"] = Objective,
        ["lower_bound"] = LowerBound,
        ["gap"] = Gap,
        ["seconds"] = Math.Round(Seconds, 4),
        ["variables"] = Variables,
        ["decisions"] = Decisions,
        ["budget"] = Budget,
        ["used"] = Used,
        ["unit"] = Unit,
        ["average_bits"] = AverageBits,
        ["pinned"] = Pinned,
        ["width_counts"] = new JsonObject(WidthCounts().Select(kv => KeyValuePair.Create(kv.Key.ToString(), (JsonNode?)kv.Value))),
    };
}
