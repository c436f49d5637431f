using MoECompress.Formats.Quantized;

namespace MoECompress.Tests.Quantization;

/// <summary>
/// compressed-tensors' pack_to_int32 against hand-computed words: ⌊32/b⌋ values per int32, little end first, rows padded
/// with zeros; 3-bit values never straddle words (10 per word, top two bits unused).
/// </summary>
public class CompressedTensorsPackingTests
{
    // 4 bits, 9 values in one row: [2,7,12,1,6,11,0,5] → nibbles 0x2,0x7,0xC,0x1,0x6,0xB,0x0,0x5 → 0x50B61C72; the
    // ninth value 10 = 0xA starts a second, zero-padded word.
    [Fact]
    public void Four_bits_pack_eight_per_word_and_pad_the_row()
    {
        int[] values = [2, 7, 12, 1, 6, 11, 0, 5, 10];
        Assert.Equal([0x50B61C72, 0xA], CompressedTensorsPacking.PackDim1(values, 1, 9, 4));
    }

    // 3 bits, 12 values: the first 10 fill bits 0..29 of word 0 (3 + 2·8 + 1·64 + 7·4096 + 6·32768 + 5·262144
    // + 4·2097152 + 3·2^24 + 2·2^27 = 328691795 = 0x13977053, bits 30–31 stay 0); values 10 and 11 (1 and 0) go to word 1.
    [Fact]
    public void Three_bits_pack_ten_per_word_without_straddling()
    {
        int[] values = [3, 2, 1, 0, 7, 6, 5, 4, 3, 2, 1, 0];
        Assert.Equal([0x13977053, 0x1], CompressedTensorsPacking.PackDim1(values, 1, 12, 3));
        Assert.Equal(2, CompressedTensorsPacking.PackedLength(12, 3));
        Assert.Equal(10, CompressedTensorsPacking.PackFactor(3));
    }

    // 2 bits, 18 values of the repeating 1, 0, 3, 2 (byte 0xB1): one full word and a word holding values 16, 17 (1, 0).
    [Fact]
    public void Two_bits_pack_sixteen_per_word()
    {
        var values = Enumerable.Range(0, 18).Select(k => (3 * k + 1) % 4).ToArray();
        Assert.Equal([unchecked((int)0xB1B1B1B1), 0x1], CompressedTensorsPacking.PackDim1(values, 1, 18, 2));
    }

    // 8 bits, 5 values: 0x0B, 0x30, 0x55, 0x7A → 0x7A55300B, then 0x9F alone.
    [Fact]
    public void Eight_bits_pack_four_per_word()
    {
        int[] values = [11, 48, 85, 122, 159];
        Assert.Equal([0x7A55300B, 0x9F], CompressedTensorsPacking.PackDim1(values, 1, 5, 8));
    }

    // Zero points pack along dim 0 (output rows): 9 rows × 2 groups at 4 bits → 2 words per column.
    [Fact]
    public void Dim0_packs_down_the_columns()
    {
        var values = new int[18];
        for (int r = 0; r < 9; r++)
        {
            values[r * 2] = r + 1;       // column 0: 1..9
            values[r * 2 + 1] = 15 - r;  // column 1: 15..7
        }
        // column 0: 1..8 → 0x87654321, then 9; column 1: 15,14,...,8 → 0x89ABCDEF, then 7.
        Assert.Equal([unchecked((int)0x87654321), unchecked((int)0x89ABCDEF), 9, 7], CompressedTensorsPacking.PackDim0(values, 9, 2, 4));
    }

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(8)]
    public void Unpack_inverts_pack_for_random_codes(int bits)
    {
        var rng = new Random(100 + bits);
        int rows = 37, cols = 83; // neither a multiple of any pack factor
        var values = Enumerable.Range(0, rows * cols).Select(_ => rng.Next(1 << bits)).ToArray();
        Assert.Equal(values, CompressedTensorsPacking.UnpackDim1(CompressedTensorsPacking.PackDim1(values, rows, cols, bits), rows, cols, bits));
        Assert.Equal(values, CompressedTensorsPacking.UnpackDim0(CompressedTensorsPacking.PackDim0(values, rows, cols, bits), rows, cols, bits));
    }
}
