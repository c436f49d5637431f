namespace MoECompress.Formats.Quantized;

/// <summary>
/// compressed-tensors' <c>pack_to_int32</c> / <c>unpack_from_int32</c>: unsigned b-bit values (the signed quantized
/// value + 2^(b−1)) packed ⌊32/b⌋ to an int32, little end first (value i of a word at bits [i·b, i·b + b)); a row is
/// padded with zeros to a whole number of words. 3-bit values therefore sit 10 to a word with the top two bits unused
/// (no cross-word values). Weights are packed along dimension 1 (input features), asymmetric zero points along
/// dimension 0 (output features).
/// </summary>
public static class CompressedTensorsPacking
{
    /// <summary>Values per int32: ⌊32 / b⌋.</summary>
    public static int PackFactor(int bits)
    {
        CheckBits(bits);
        return 32 / bits;
    }

    /// <summary>Words needed for <paramref name="count"/> values: ⌈count / ⌊32/b⌋⌉.</summary>
    public static int PackedLength(long count, int bits)
    {
        int pf = PackFactor(bits);
        return checked((int)((count + pf - 1) / pf));
    }

    /// <summary>Packs <paramref name="values"/> [rows, cols] (row-major, unsigned) along dimension 1 → int32 [rows, ⌈cols/pf⌉].</summary>
    public static int[] PackDim1(ReadOnlySpan<int> values, int rows, int cols, int bits)
    {
        CheckShape(values.Length, rows, cols);
        int pf = PackFactor(bits), words = PackedLength(cols, bits);
        uint mask = (1u << bits) - 1;
        var packed = new uint[(long)rows * words];
        for (int r = 0; r < rows; r++)
        {
            int rowIn = r * cols, rowOut = r * words;
            for (int c = 0; c < cols; c++)
            {
                uint v = (uint)values[rowIn + c];
                if (v > mask) throw OutOfRange(values[rowIn + c], bits, r, c);
                packed[rowOut + c / pf] |= v << (bits * (c % pf));
            }
        }
        return AsInt(packed);
    }

    /// <summary>Inverse of <see cref="PackDim1"/> (padding dropped).</summary>
    public static int[] UnpackDim1(ReadOnlySpan<int> packed, int rows, int cols, int bits)
    {
        int pf = PackFactor(bits), words = PackedLength(cols, bits);
        if (packed.Length != (long)rows * words)
            throw new ArgumentException($"packed data holds {packed.Length} int32, expected {rows} × {words}", nameof(packed));
        uint mask = (1u << bits) - 1;
        var values = new int[(long)rows * cols];
        for (int r = 0; r < rows; r++)
        {
            int rowIn = r * words, rowOut = r * cols;
            for (int c = 0; c < cols; c++)
                values[rowOut + c] = (int)(((uint)packed[rowIn + c / pf] >> (bits * (c % pf))) & mask);
        }
        return values;
    }

    /// <summary>Packs <paramref name="values"/> [rows, cols] along dimension 0 → int32 [⌈rows/pf⌉, cols].</summary>
    public static int[] PackDim0(ReadOnlySpan<int> values, int rows, int cols, int bits)
    {
        CheckShape(values.Length, rows, cols);
        int pf = PackFactor(bits), words = PackedLength(rows, bits);
        uint mask = (1u << bits) - 1;
        var packed = new uint[(long)words * cols];
        for (int r = 0; r < rows; r++)
        {
            int rowIn = r * cols, rowOut = r / pf * cols, shift = bits * (r % pf);
            for (int c = 0; c < cols; c++)
            {
                uint v = (uint)values[rowIn + c];
                if (v > mask) throw OutOfRange(values[rowIn + c], bits, r, c);
                packed[rowOut + c] |= v << shift;
            }
        }
        return AsInt(packed);
    }

    /// <summary>Inverse of <see cref="PackDim0"/> (padding dropped).</summary>
    public static int[] UnpackDim0(ReadOnlySpan<int> packed, int rows, int cols, int bits)
    {
        int pf = PackFactor(bits), words = PackedLength(rows, bits);
        if (packed.Length != (long)words * cols)
            throw new ArgumentException($"packed data holds {packed.Length} int32, expected {words} × {cols}", nameof(packed));
        uint mask = (1u << bits) - 1;
        var values = new int[(long)rows * cols];
        for (int r = 0; r < rows; r++)
        {
            int rowIn = r / pf * cols, rowOut = r * cols, shift = bits * (r % pf);
            for (int c = 0; c < cols; c++)
                values[rowOut + c] = (int)(((uint)packed[rowIn + c] >> shift) & mask);
        }
        return values;
    }

    private static void CheckBits(int bits)
    {
        if (bits is < 1 or > 8)
            throw new ArgumentOutOfRangeException(nameof(bits), bits, "compressed-tensors packs 1 to 8 bits");
    }

    private static void CheckShape(int length, int rows, int cols)
    {
        if (rows < 0 || cols < 0 || (long)rows * cols != length)
            throw new ArgumentException($"{length} values do not form a [{rows}, {cols}] matrix");
    }

    private static ArgumentException OutOfRange(int value, int bits, int r, int c) =>
        new($"value {value} at [{r}, {c}] does not fit in {bits} bits");

    private static int[] AsInt(uint[] packed)
    {
        var result = new int[packed.Length];
        Buffer.BlockCopy(packed, 0, result, 0, packed.Length * sizeof(uint));
        return result;
    }
}
