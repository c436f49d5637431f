namespace MoECompress.Compression.Quantization;

/// <summary>Settings of <see cref="GptqQuantizer"/> (defaults of the GPTQ reference code).</summary>
public sealed record GptqOptions
{
    /// <summary>Dampening added to the Hessian's diagonal, as a fraction of its mean diagonal (GPTQ's percdamp, 1%).</summary>
    public double DampPercent { get; init; } = 0.01;

    /// <summary>
    /// When the dampened Hessian (or its inverse) has no Cholesky factor in float32, the dampening is raised by this
    /// fraction and tried again, up to 100% (GPTQModel's damp_auto_increment).
    /// </summary>
    public double DampAutoIncrement { get; init; } = 0.0025;

    /// <summary>Columns per lazy-batch block (128).</summary>
    public int BlockSize { get; init; } = 128;

    /// <summary>
    /// Act-order (desc_act): process columns by descending Hessian diagonal; groups are formed in that order, so the
    /// returned <see cref="QuantizedMatrix.GroupIndex"/> is no longer c / group size.
    /// </summary>
    public bool ActOrder { get; init; }
}
