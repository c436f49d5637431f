namespace MoECompress.Compression.Quantization;

/// <summary>How <see cref="BitAllocator"/> solves the multiple-choice knapsack.</summary>
public enum BitAllocationSolver
{
    /// <summary>Exact MIP (SCIP) for instances up to <see cref="BitAllocatorOptions.ExactMaxVariables"/> binary
    /// variables, the rounded LP relaxation (GLOP) beyond, or when the MIP finds nothing in its time limit.</summary>
    Auto,
    /// <summary>Always the MIP (SCIP, or CBC where SCIP is missing), within <see cref="BitAllocatorOptions.TimeLimitSeconds"/>.</summary>
    Exact,
    /// <summary>Always the LP relaxation (GLOP), rounded to a feasible integral choice and improved greedily.</summary>
    Relaxation,
}
