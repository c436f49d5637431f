namespace MoECompress.Formats.Quantized;

/// <summary>
/// GPTQ's int32 packing (AutoGPTQ / GPTQModel "gptq" checkpoints): b-bit values laid out as one little-endian bit
/// stream per column (packing along dimension 0) or per row (along dimension 1), value k occupying stream bits
/// [k·b, k·b + b). For 2, 4 and 8 bits that is 32/b whole values per int32; for 3 bits every 32 values fill three
/// int32 words and values 10 and 21 of each 32 straddle two words (AutoGPTQ's cross-word packing: value 10 puts its
/// low two bits at bits 30–31 of the first word and its high bit at bit 0 of the second; value 21 its low bit at bit
/// 31 of the second word and its high two bits at bits 0–1 of the third).
/// </summary>
public static class GptqPacking
{
    /// <summary>
    /// Packs <paramref name="values"/> [rows, cols] (row-major, each in 0..2^b − 1) along dimension 0 into int32
    /// [rows·b/32, cols] (<c>qweight</c>: rows = input features, cols = output features).
    /// </summary>
    /// <exception cref="ArgumentException">rows·b is not a multiple of 32, a length disagrees, or a value is out of range.</exception>
    public static int[] PackDim0(ReadOnlySpan<int> values, int rows, int cols, int bits)
    {
        CheckArgs(values.Length, rows, cols, bits);
        if ((long)rows * bits % 32 != 0)
            throw new ArgumentException($"{rows} rows × {bits} bits is not a whole number of int32 words", nameof(rows));
        int words = rows * bits / 32;
        var packed = new uint[(long)words * cols];
        uint mask = (1u << bits) - 1;
        for (int r = 0; r < rows; r++)
        {
            long bit = (long)r * bits;
            int word = (int)(bit >> 5), shift = (int)(bit & 31);
            bool straddles = shift + bits > 32;
            int baseIndex = word * cols;
            int rowStart = r * cols;
            for (int c = 0; c < cols; c++)
            {
                uint v = (uint)values[rowStart + c];
                if (v > mask) throw OutOfRange(values[rowStart + c], bits, r, c);
                packed[baseIndex + c] |= v << shift;
                if (straddles) packed[baseIndex + cols + c] |= v >> (32 - shift);
            }
        }
        return AsInt(packed);
    }

    /// <summary>Inverse of <see cref="PackDim0"/>: int32 [rows·b/32, cols] → values [rows, cols] (row-major).</summary>
    public static int[] UnpackDim0(ReadOnlySpan<int> packed, int rows, int cols, int bits)
    {
        CheckBits(bits);
        if ((long)rows * bits % 32 != 0)
            throw new ArgumentException($"{rows} rows × {bits} bits is not a whole number of int32 words", nameof(rows));
        int words = rows * bits / 32;
        if (packed.Length != (long)words * cols)
            throw new ArgumentException($"packed data holds {packed.Length} int32, expected {words} × {cols}", nameof(packed));
        var values = new int[(long)rows * cols];
        uint mask = (1u << bits) - 1;
        for (int r = 0; r < rows; r++)
        {
            long bit = (long)r * bits;
            int word = (int)(bit >> 5), shift = (int)(bit & 31);
            bool straddles = shift + bits > 32;
            int baseIndex = word * cols;
            int rowStart = r * cols;
            for (int c = 0; c < cols; c++)
            {
                uint v = (uint)packed[baseIndex + c] >> shift;
                if (straddles) v |= (uint)packed[baseIndex + cols + c] << (32 - shift);
                values[rowStart + c] = (int)(v & mask);
            }
        }
        return values;
    }

    /// <summary>
    /// Packs <paramref name="values"/> [rows, cols] along dimension 1 into int32 [rows, cols·b/32] (<c>qzeros</c>:
    /// rows = groups, cols = output features).
    /// </summary>
    public static int[] PackDim1(ReadOnlySpan<int> values, int rows, int cols, int bits)
    {
        CheckArgs(values.Length, rows, cols, bits);
        if ((long)cols * bits % 32 != 0)
            throw new ArgumentException($"{cols} columns × {bits} bits is not a whole number of int32 words", nameof(cols));
        int words = cols * bits / 32;
        var packed = new uint[(long)rows * words];
        uint mask = (1u << bits) - 1;
        for (int r = 0; r < rows; r++)
        {
            int rowIn = r * cols, rowOut = r * words;
            for (int c = 0; c < cols; c++)
            {
                uint v = (uint)values[rowIn + c];
                if (v > mask) throw OutOfRange(values[rowIn + c], bits, r, c);
                long bit = (long)c * bits;
                int word = (int)(bit >> 5), shift = (int)(bit & 31);
                packed[rowOut + word] |= v << shift;
                if (shift + bits > 32) packed[rowOut + word + 1] |= v >> (32 - shift);
            }
        }
        return AsInt(packed);
    }

    /// <summary>Inverse of <see cref="PackDim1"/>: int32 [rows, cols·b/32] → values [rows, cols] (row-major).</summary>
    public static int[] UnpackDim1(ReadOnlySpan<int> packed, int rows, int cols, int bits)
    {
        CheckBits(bits);
        if ((long)cols * bits % 32 != 0)
            throw new ArgumentException($"{cols} columns × {bits} bits is not a whole number of int32 words", nameof(cols));
        int words = cols * bits / 32;
        if (packed.Length != (long)rows * words)
            throw new ArgumentException($"packed data holds {packed.Length} int32, expected {rows} × {words}", nameof(packed));
        var values = new int[(long)rows * cols];
        uint mask = (1u << bits) - 1;
        for (int r = 0; r < rows; r++)
        {
            int rowIn = r * words, rowOut = r * cols;
            for (int c = 0; c < cols; c++)
            {
                long bit = (long)c * bits;
                int word = (int)(bit >> 5), shift = (int)(bit & 31);
                uint v = (uint)packed[rowIn + word] >> shift;
                if (shift + bits > 32) v |= (uint)packed[rowIn + word + 1] << (32 - shift);
                values[rowOut + c] = (int)(v & mask);
            }
        }
        return values;
    }

    private static void CheckArgs(int length, int rows, int cols, int bits)
    {
        CheckBits(bits);
        if (rows < 0 || cols < 0 || (long)rows * cols != length)
            throw new ArgumentException($"{length} values do not form a [{rows}, {cols}] matrix");
    }

    private static void CheckBits(int bits)
    {
        if (bits is not (2 or 3 or 4 or 8))
            throw new ArgumentOutOfRangeException(nameof(bits), bits, "GPTQ packs 2, 3, 4 or 8 bits");
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
