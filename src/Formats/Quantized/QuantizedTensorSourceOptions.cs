using MoECompress.Formats.Safetensors;

namespace MoECompress.Formats.Quantized;

/// <summary>How a <see cref="QuantizedTensorSource"/> presents dequantized weights.</summary>
public sealed record QuantizedTensorSourceOptions
{
    /// <summary>
    /// dtype of the presented <c>prefix.weight</c> tensors: F32 (default: Ŵ = s·(q − z) exactly as computed), BF16 or
    /// F16 (rounded, half the memory).
    /// </summary>
    public SafetensorsDType DType { get; init; } = SafetensorsDType.F32;

    /// <summary>Most bytes of dequantized weights kept for reuse (least recently used dropped first; the latest one is always kept).</summary>
    public long CacheBytes { get; init; } = 256L << 20;
}
