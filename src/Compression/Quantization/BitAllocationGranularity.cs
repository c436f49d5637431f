namespace MoECompress.Compression.Quantization;

/// <summary>What one bit-width decision of <see cref="BitAllocator"/> covers.</summary>
public enum BitAllocationGranularity
{
    /// <summary>One width per routed expert (real only in formats that declare per-module bits, or in dequantized output).</summary>
    Expert,
    /// <summary>One width per MoE layer, shared by all its experts (what vLLM's fused MoE kernels need).</summary>
    Layer,
}
