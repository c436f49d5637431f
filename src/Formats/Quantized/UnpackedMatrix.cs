namespace MoECompress.Formats.Quantized;

/// <summary>
/// A group-quantized matrix W [out, in] in plain arrays, as the packed layouts encode and decode it: integer codes
/// q [out, in], and per output row and group a scale s and zero point z [out, groups], so that
/// Ŵ[r, c] = s[r, g(c)] · (q[r, c] − z[r, g(c)]) with g(c) = <see cref="GroupIndex"/>[c] (GPTQ's g_idx).
/// All arrays are row-major.
/// </summary>
public sealed class UnpackedMatrix
{
    /// <summary>Checks the array lengths against the dimensions and wraps the arrays (not copied).</summary>
    /// <exception cref="ArgumentException">A length disagrees with the dimensions.</exception>
    public UnpackedMatrix(int bits, int outFeatures, int inFeatures, int groups, int[] codes, float[] scales, float[] zeros,
        int[] groupIndex)
    {
        if (outFeatures < 0 || inFeatures < 0 || groups < 1)
            throw new ArgumentException($"invalid dimensions [{outFeatures}, {inFeatures}] with {groups} groups");
        if (codes.LongLength != (long)outFeatures * inFeatures)
            throw new ArgumentException($"{codes.Length} codes for a [{outFeatures}, {inFeatures}] matrix", nameof(codes));
        if (scales.LongLength != (long)outFeatures * groups)
            throw new ArgumentException($"{scales.Length} scales for [{outFeatures}, {groups}]", nameof(scales));
        if (zeros.LongLength != (long)outFeatures * groups)
            throw new ArgumentException($"{zeros.Length} zero points for [{outFeatures}, {groups}]", nameof(zeros));
        if (groupIndex.Length != inFeatures)
            throw new ArgumentException($"{groupIndex.Length} group indices for {inFeatures} columns", nameof(groupIndex));
        foreach (var g in groupIndex)
            if ((uint)g >= (uint)groups)
                throw new ArgumentException($"group index {g} is outside 0..{groups - 1}", nameof(groupIndex));
        Bits = bits;
        OutFeatures = outFeatures;
        InFeatures = inFeatures;
        Groups = groups;
        Codes = codes;
        Scales = scales;
        Zeros = zeros;
        GroupIndex = groupIndex;
    }

    /// <summary>Bits per code.</summary>
    public int Bits { get; }
    /// <summary>Rows of W.</summary>
    public int OutFeatures { get; }
    /// <summary>Columns of W.</summary>
    public int InFeatures { get; }
    /// <summary>Groups per row.</summary>
    public int Groups { get; }
    /// <summary>Codes q [out, in].</summary>
    public int[] Codes { get; }
    /// <summary>Scales s [out, groups].</summary>
    public float[] Scales { get; }
    /// <summary>Zero points z [out, groups].</summary>
    public float[] Zeros { get; }
    /// <summary>Group of each column [in].</summary>
    public int[] GroupIndex { get; }

    /// <summary>Ŵ = s · (q − z) into <paramref name="destination"/> [out, in] (row-major).</summary>
    public void Dequantize(Span<float> destination)
    {
        if (destination.Length != (long)OutFeatures * InFeatures)
            throw new ArgumentException($"destination holds {destination.Length} values, expected {OutFeatures} × {InFeatures}", nameof(destination));
        for (int r = 0; r < OutFeatures; r++)
        {
            int row = r * InFeatures, rowGroups = r * Groups;
            for (int c = 0; c < InFeatures; c++)
            {
                int g = rowGroups + GroupIndex[c];
                destination[row + c] = Scales[g] * (Codes[row + c] - Zeros[g]);
            }
        }
    }

    /// <summary>Ŵ = s · (q − z) as a new array [out, in].</summary>
    public float[] Dequantize()
    {
        var result = new float[(long)OutFeatures * InFeatures];
        Dequantize(result);
        return result;
    }

    /// <summary>g(c) = c / group size (−1 or 0: one group) for <paramref name="inFeatures"/> columns.</summary>
    public static int[] SequentialGroupIndex(int inFeatures, int groupSize)
    {
        var g = new int[inFeatures];
        if (groupSize <= 0) return g;
        for (int c = 0; c < inFeatures; c++) g[c] = c / groupSize;
        return g;
    }

    /// <summary>True when <see cref="GroupIndex"/> is c / <paramref name="groupSize"/> for every column.</summary>
    public bool HasSequentialGroups(int groupSize)
    {
        for (int c = 0; c < InFeatures; c++)
            if (GroupIndex[c] != (groupSize <= 0 ? 0 : c / groupSize)) return false;
        return true;
    }
}
