using MoECompress.Formats.Safetensors;

namespace MoECompress.Formats.Quantized;

/// <summary>Options of <see cref="Dequantizer.Run"/> (<c>moe-compress dequantize</c>).</summary>
public sealed record DequantizeOptions
{
    /// <summary>The packed checkpoint folder (gptq or compressed-tensors pack-quantized).</summary>
    public required string Input { get; init; }

    /// <summary>The folder to write (created beside its parent through a temporary folder and renamed into place).</summary>
    public required string Output { get; init; }

    /// <summary>Replace an existing <see cref="Output"/>.</summary>
    public bool Overwrite { get; init; }

    /// <summary>dtype of the dequantized weights (BF16 by default; F16 or F32). Other tensors keep their dtype.</summary>
    public SafetensorsDType DType { get; init; } = SafetensorsDType.BF16;

    /// <summary>fsync the output before the rename (see <see cref="CheckpointWriterOptions.FlushToDisk"/>).</summary>
    public bool FlushToDisk { get; init; } = true;
}
