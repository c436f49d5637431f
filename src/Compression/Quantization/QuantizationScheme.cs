using MoECompress.Formats.Errors;

namespace MoECompress.Compression.Quantization;

/// <summary>
/// How one weight matrix [out, in] is quantized: <see cref="Bits"/> per weight (1, 2, 3, 4 or 8), one scale (and zero
/// point unless <see cref="Symmetric"/>) per output row and group of <see cref="GroupSize"/> consecutive input columns
/// (−1 = one group over the whole row). 1-bit means sign × per-group scale (no zero point).
/// </summary>
public sealed record QuantizationScheme(int Bits, int GroupSize = 128, bool Symmetric = false)
{
    /// <summary>The widths the quantizers implement.</summary>
    public static IReadOnlyList<int> SupportedBits { get; } = [1, 2, 3, 4, 8];

    /// <summary>Largest code value 2^b − 1.</summary>
    public int MaxCode => (1 << Bits) - 1;

    /// <summary>Columns per group for a matrix with <paramref name="inFeatures"/> input columns.</summary>
    public int EffectiveGroupSize(long inFeatures) => GroupSize <= 0 ? checked((int)inFeatures) : GroupSize;

    /// <summary>Number of groups per row: ceil(in / group size).</summary>
    public int Groups(long inFeatures)
    {
        int g = EffectiveGroupSize(inFeatures);
        return checked((int)((inFeatures + g - 1) / g));
    }

    /// <summary>Throws <see cref="MoeCompressException"/> (Usage) naming the option when the scheme is not implemented.</summary>
    public void Validate(string option = "--bits")
    {
        if (!SupportedBits.Contains(Bits))
            throw new MoeCompressException(ErrorKind.Usage, $"{option} {Bits}: supported widths are {string.Join(", ", SupportedBits)}");
        if (GroupSize == 0 || GroupSize < -1)
            throw new MoeCompressException(ErrorKind.Usage, $"--group-size {GroupSize} must be positive (or -1 for one group per row)");
    }

    /// <inheritdoc/>
    public override string ToString() => $"{Bits}-bit, group {(GroupSize <= 0 ? "row" : GroupSize.ToString())}, {(Bits == 1 ? "sign" : Symmetric ? "sym" : "asym")}";
}
