namespace MoECompress.Formats.Quantized;

/// <summary>
/// The quantization of one packed Linear module as a checkpoint declares it: <see cref="Bits"/> per weight,
/// <see cref="GroupSize"/> input columns per scale (−1 = one group per row), symmetric or not.
/// </summary>
public sealed record PackedScheme(int Bits, int GroupSize, bool Symmetric)
{
    /// <summary>Widths the packed layouts hold (1-bit sign × scale has no integer zero point in them).</summary>
    public static IReadOnlyList<int> PackableBits { get; } = [2, 3, 4, 8];

    /// <summary>Number of groups per row for <paramref name="inFeatures"/> input columns.</summary>
    public int Groups(long inFeatures)
    {
        long g = GroupSize <= 0 ? inFeatures : GroupSize;
        return checked((int)((inFeatures + g - 1) / g));
    }

    /// <inheritdoc/>
    public override string ToString() => $"{Bits}-bit, group {(GroupSize <= 0 ? "row" : GroupSize.ToString())}, {(Symmetric ? "sym" : "asym")}";
}
