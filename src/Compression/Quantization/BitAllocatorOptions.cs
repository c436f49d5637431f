using MoECompress.Formats.Errors;

namespace MoECompress.Compression.Quantization;

/// <summary>
/// Settings of <see cref="BitAllocator.Allocate"/> (MC-MoE's pre-loading mixed-precision quantization, PMQ): the
/// candidate widths, the exponents of the cost φ^α · w^β · ε^γ, the budget (average bits over the items' parameters,
/// or bytes) and the granularity.
/// </summary>
public sealed record BitAllocatorOptions
{
    /// <summary>Candidate widths (each one of 1, 2, 3, 4, 8). Default {2, 3, 4}.</summary>
    public IReadOnlyList<int> Candidates { get; init; } = [2, 3, 4];
    /// <summary>Exponent α of the frequency φ (paper default 1).</summary>
    public double Alpha { get; init; } = 1.0;
    /// <summary>Exponent β of the routing weight w (paper default 1.5).</summary>
    public double Beta { get; init; } = 1.5;
    /// <summary>Exponent γ of the error ε (paper default 2; the paper's code uses 1).</summary>
    public double Gamma { get; init; } = 2.0;
    /// <summary>Budget as average bits per item parameter: Σ b·params ≤ AverageBits · Σ params. Exactly one of this and
    /// <see cref="BudgetBytes"/>.</summary>
    public double? AverageBits { get; init; }
    /// <summary>Budget in bytes: <see cref="FixedBytes"/> + Σ bytes(item, b) ≤ BudgetBytes (items need
    /// <see cref="BitAllocationItem.Bytes"/>). Exactly one of this and <see cref="AverageBits"/>.</summary>
    public long? BudgetBytes { get; init; }
    /// <summary>Bytes that do not depend on the allocation (every other tensor of the output), counted against
    /// <see cref="BudgetBytes"/>.</summary>
    public long FixedBytes { get; init; }
    /// <summary>One width per expert or per layer.</summary>
    public BitAllocationGranularity Granularity { get; init; } = BitAllocationGranularity.Expert;
    /// <summary>Solver choice (default: exact when small, rounded LP relaxation when large).</summary>
    public BitAllocationSolver Solver { get; init; } = BitAllocationSolver.Auto;
    /// <summary>Largest number of binary variables (after removing dominated widths) that
    /// <see cref="BitAllocationSolver.Auto"/> gives to the exact MIP.</summary>
    public int ExactMaxVariables { get; init; } = 4096;
    /// <summary>Time limit of the MIP, seconds.</summary>
    public double TimeLimitSeconds { get; init; } = 10;
    /// <summary>The option that set the budget, named in error messages ("--bits", "--size").</summary>
    public string BudgetOption { get; init; } = "--bits";

    /// <summary>Throws <see cref="MoeCompressException"/> (Usage) naming the first bad setting.</summary>
    public void Validate()
    {
        if (Candidates.Count == 0)
            throw new MoeCompressException(ErrorKind.Usage, "--candidates: give at least one width");
        foreach (var b in Candidates)
            if (!QuantizationScheme.SupportedBits.Contains(b))
                throw new MoeCompressException(ErrorKind.Usage,
                    $"--candidates {string.Join(",", Candidates)}: {b} is not a supported width ({string.Join(", ", QuantizationScheme.SupportedBits)})");
        if (Candidates.Distinct().Count() != Candidates.Count)
            throw new MoeCompressException(ErrorKind.Usage, $"--candidates {string.Join(",", Candidates)}: a width appears twice");
        foreach (var (name, value) in new[] { ("--alpha", Alpha), ("--beta", Beta), ("--gamma", Gamma) })
            if (!double.IsFinite(value) || value < 0)
                throw new MoeCompressException(ErrorKind.Usage, $"{name} {value}: must be a finite number ≥ 0");
        if ((AverageBits is null) == (BudgetBytes is null))
            throw new MoeCompressException(ErrorKind.Usage, "give exactly one budget: average bits (--bits) or bytes (--size)");
        if (AverageBits is { } bits && (!double.IsFinite(bits) || bits <= 0))
            throw new MoeCompressException(ErrorKind.Usage, $"{BudgetOption} {bits}: must be a positive number of bits");
        if (BudgetBytes is <= 0)
            throw new MoeCompressException(ErrorKind.Usage, $"{BudgetOption} {BudgetBytes}: must be a positive number of bytes");
        if (FixedBytes < 0) throw new ArgumentOutOfRangeException(nameof(FixedBytes), FixedBytes, "must not be negative");
        if (ExactMaxVariables < 0) throw new ArgumentOutOfRangeException(nameof(ExactMaxVariables), ExactMaxVariables, "must not be negative");
        if (!(TimeLimitSeconds > 0)) throw new ArgumentOutOfRangeException(nameof(TimeLimitSeconds), TimeLimitSeconds, "must be positive");
    }
}
