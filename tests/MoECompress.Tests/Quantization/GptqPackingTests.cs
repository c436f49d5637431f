using MoECompress.Formats.Quantized;

namespace MoECompress.Tests.Quantization;

/// <summary>
/// GPTQ's int32 packing against hand-computed words. qweight packs along the input dimension (dim 0), qzeros along the
/// output dimension (dim 1); both are one little-endian bit stream, value k at bits [k·b, k·b + b).
/// </summary>
public class GptqPackingTests
{
    // 4 bits: 8 values per word, value k at bits 4k. [1, 2, ..., 8] → 0x87654321.
    [Fact]
    public void Four_bits_pack_eight_values_per_word_low_nibble_first()
    {
        int[] values = [1, 2, 3, 4, 5, 6, 7, 8];
        Assert.Equal([unchecked((int)0x87654321)], GptqPacking.PackDim0(values, 8, 1, 4));
        Assert.Equal([unchecked((int)0x87654321)], GptqPacking.PackDim1(values, 1, 8, 4));
    }

    // 2 bits: 16 values per word. The repeating 1, 0, 3, 2 is the byte 0b10_11_00_01 = 0xB1.
    [Fact]
    public void Two_bits_pack_sixteen_values_per_word()
    {
        var values = Enumerable.Range(0, 32).Select(k => (3 * k + 1) % 4).ToArray();
        int[] expected = [unchecked((int)0xB1B1B1B1), unchecked((int)0xB1B1B1B1)];
        Assert.Equal(expected, GptqPacking.PackDim0(values, 32, 1, 2));
        Assert.Equal(expected, GptqPacking.PackDim1(values, 1, 32, 2));
    }

    // 8 bits: 4 values per word, bytes little end first: [11, 48, 85, 122] = 0x0B, 0x30, 0x55, 0x7A → 0x7A55300B.
    [Fact]
    public void Eight_bits_pack_four_bytes_per_word()
    {
        int[] values = [11, 48, 85, 122, 159, 196, 233, 14];
        int[] expected = [0x7A55300B, 0x0EE9C49F];
        Assert.Equal(expected, GptqPacking.PackDim0(values, 8, 1, 8));
        Assert.Equal(expected, GptqPacking.PackDim1(values, 1, 8, 8));
    }

    // 3 bits: 32 values in 3 words. Values 3,2,1,0,7,6,5,4 repeating. Word 0 = values 0..9 at bits 3k plus the low two
    // bits of value 10 (= 1 → 01) at bits 30–31: 3 + 2·8 + 1·64 + 7·4096 + 6·32768 + 5·262144 + 4·2097152 + 3·16777216
    // + 2·134217728 + 1·2^30 = 1402433619 = 0x53977053. Value 10's high bit (0) is bit 0 of word 1, values 11..20 follow
    // at bits 1..30, value 21 (= 6 → 110) puts its low bit 0 at bit 31 and its high bits 11 at bits 0–1 of word 2.
    [Fact]
    public void Three_bits_straddle_words_as_autogptq_packs_them()
    {
        int[] pattern = [3, 2, 1, 0, 7, 6, 5, 4];
        var values = Enumerable.Range(0, 32).Select(k => pattern[k % 8]).ToArray();
        int[] expected = [0x53977053, 0x70539770, unchecked((int)0x97705397)];
        Assert.Equal(expected, GptqPacking.PackDim0(values, 32, 1, 3));
        Assert.Equal(expected, GptqPacking.PackDim1(values, 1, 32, 3));
        Assert.Equal(1, (expected[0] >>> 30) | ((expected[1] & 1) << 2)); // value 10 = 1
        Assert.Equal(6, (expected[1] >>> 31) | ((expected[2] & 3) << 1)); // value 21 = 6
    }

    [Fact]
    public void Columns_are_packed_independently_along_dim0()
    {
        // Two columns, 8 rows of 4 bits: column 0 = 1..8, column 1 = 8..1.
        var values = new int[16];
        for (int r = 0; r < 8; r++)
        {
            values[r * 2] = r + 1;
            values[r * 2 + 1] = 8 - r;
        }
        Assert.Equal([unchecked((int)0x87654321), 0x12345678], GptqPacking.PackDim0(values, 8, 2, 4));
    }

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(8)]
    public void Unpack_inverts_pack_for_random_codes(int bits)
    {
        var rng = new Random(bits);
        int rows = 64, cols = 96;
        var values = Enumerable.Range(0, rows * cols).Select(_ => rng.Next(1 << bits)).ToArray();
        Assert.Equal(values, GptqPacking.UnpackDim0(GptqPacking.PackDim0(values, rows, cols, bits), rows, cols, bits));
        Assert.Equal(values, GptqPacking.UnpackDim1(GptqPacking.PackDim1(values, rows, cols, bits), rows, cols, bits));
        Assert.Equal(rows * bits / 32 * cols, GptqPacking.PackDim0(values, rows, cols, bits).Length);
    }

    [Fact]
    public void Values_that_do_not_fit_are_refused()
    {
        Assert.Throws<ArgumentException>(() => GptqPacking.PackDim0([16, 0, 0, 0, 0, 0, 0, 0], 8, 1, 4));
        Assert.Throws<ArgumentException>(() => GptqPacking.PackDim0([-1, 0, 0, 0, 0, 0, 0, 0], 8, 1, 4));
        Assert.Throws<ArgumentOutOfRangeException>(() => GptqPacking.PackDim0(new int[32], 32, 1, 1));
    }
}
