namespace MoECompress.Compression.Quantization;

/// <summary>How good a <see cref="BitAllocation"/> is known to be.</summary>
public enum BitAllocationStatus
{
    /// <summary>Proven optimal (the MIP closed its gap, the rounded LP met its bound, or every item could take its cheapest width).</summary>
    Optimal,
    /// <summary>A MIP solution found within the time limit; <see cref="BitAllocation.Gap"/> bounds its distance to the optimum.</summary>
    Feasible,
    /// <summary>The LP relaxation rounded to an integral choice; <see cref="BitAllocation.Gap"/> bounds its distance to the optimum.</summary>
    Rounded,
}
