using System.Buffers.Binary;
using MoECompress.Formats.Gguf;

namespace MoECompress.Tests.Gguf;

/// <summary>
/// Block layouts against hand-computed blocks (ggml-common.h / ggml-quants.c): chosen bytes decode to the values worked
/// out by hand from the documented bit positions, and blocks in canonical form (every sub-scale at its maximum level,
/// codes spanning the range) are reproduced byte for byte by quantizing their own dequantized values.
/// </summary>
public sealed class GgmlCodecTests
{
    private static byte[] Block(GgmlType t) => new byte[t.BlockBytes()];
    private static void Half(byte[] b, int at, float v) => BinaryPrimitives.WriteHalfLittleEndian(b.AsSpan(at), (Half)v);

    private static float[] Decode(GgmlType t, byte[] b)
    {
        var y = new float[t.BlockSize()];
        GgmlCodec.DequantizeRow(t, b, y);
        return y;
    }

    private static byte[] Encode(GgmlType t, float[] x, float[]? w = null)
    {
        var b = new byte[t.RowBytes(x.Length)];
        GgmlCodec.QuantizeRow(t, x, w, b);
        return b;
    }

    [Theory]
    [InlineData(GgmlType.Q8_0, 32, 34)]
    [InlineData(GgmlType.Q4_0, 32, 18)]
    [InlineData(GgmlType.Q4_1, 32, 20)]
    [InlineData(GgmlType.Q5_0, 32, 22)]
    [InlineData(GgmlType.Q5_1, 32, 24)]
    [InlineData(GgmlType.Q2_K, 256, 84)]
    [InlineData(GgmlType.Q3_K, 256, 110)]
    [InlineData(GgmlType.Q4_K, 256, 144)]
    [InlineData(GgmlType.Q5_K, 256, 176)]
    [InlineData(GgmlType.Q6_K, 256, 210)]
    [InlineData(GgmlType.BF16, 1, 2)]
    public void BlockSizesAreGgmls(GgmlType type, int elements, int bytes)
    {
        Assert.Equal(elements, type.BlockSize());
        Assert.Equal(bytes, type.BlockBytes());
    }

    [Fact]
    public void Q8_0HandBlock()
    {
        var b = Block(GgmlType.Q8_0);
        Half(b, 0, 0.5f);
        b[2] = 1; b[3] = unchecked((byte)-2); b[4] = 127; b[5] = unchecked((byte)-127);
        var y = Decode(GgmlType.Q8_0, b);
        Assert.Equal([0.5f, -1f, 63.5f, -63.5f, 0f], y[..5]);
        Assert.Equal(b, Encode(GgmlType.Q8_0, y));
    }

    [Fact]
    public void Q4_0HandBlock()
    {
        var b = Block(GgmlType.Q4_0);
        Half(b, 0, 2f);
        for (var j = 0; j < 16; j++) b[2 + j] = (byte)(j | ((15 - j) << 4));
        b[2] = 0x9F; // element 0: code 15 → (15−8)·2 = 14; element 16: code 9 → 2
        b[3] = 0x08; // element 1: code 8 → 0; element 17: code 0 → −16
        var y = Decode(GgmlType.Q4_0, b);
        Assert.Equal(14f, y[0]);
        Assert.Equal(2f, y[16]);
        Assert.Equal(0f, y[1]);
        Assert.Equal(-16f, y[17]);
        Assert.Equal(2f * (5 - 8), y[5]);       // byte 5 low nibble 5
        Assert.Equal(2f * (15 - 5 - 8), y[21]); // its high nibble 10
        Assert.Equal(b, Encode(GgmlType.Q4_0, y));
    }

    [Fact]
    public void Q4_1HandBlock()
    {
        var b = Block(GgmlType.Q4_1);
        Half(b, 0, 0.25f);
        Half(b, 2, -1f);
        for (var j = 0; j < 16; j++) b[4 + j] = (byte)(j | ((15 - j) << 4)); // element j: j, element j+16: 15 − j
        var y = Decode(GgmlType.Q4_1, b);
        Assert.Equal(-1f, y[0]);
        Assert.Equal(0.25f * 15 - 1, y[16]);
        Assert.Equal(0.25f * 3 - 1, y[3]);
        Assert.Equal(0.25f * 12 - 1, y[19]);
        Assert.Equal(b, Encode(GgmlType.Q4_1, y));
    }

    [Fact]
    public void Q5_0HandBlock()
    {
        var b = Block(GgmlType.Q5_0);
        Half(b, 0, 1f);
        for (var j = 0; j < 16; j++) b[6 + j] = (byte)(j | ((15 - j) << 4));
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(2), (1u << 3) | (1u << 20)); // fifth bit of elements 3 and 20
        var y = Decode(GgmlType.Q5_0, b);
        Assert.Equal(0f - 16, y[0]);
        Assert.Equal(3f + 16 - 16, y[3]);
        Assert.Equal(15f - 4 + 16 - 16, y[20]); // element 20: high nibble of byte 4 (11) with bit 20
        Assert.Equal(15f - 16, y[16]);
        Assert.Equal(b, Encode(GgmlType.Q5_0, y));
    }

    [Fact]
    public void Q5_1HandBlock()
    {
        var b = Block(GgmlType.Q5_1);
        Half(b, 0, 0.5f);
        Half(b, 2, 2f);
        for (var j = 0; j < 16; j++) b[8 + j] = (byte)(j | ((15 - j) << 4));
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(4), (1u << 15) | (1u << 31)); // elements 15 and 31 get +16
        var y = Decode(GgmlType.Q5_1, b);
        Assert.Equal(2f, y[0]);
        Assert.Equal(0.5f * 31 + 2, y[15]);
        Assert.Equal(0.5f * 16 + 2, y[31]); // high nibble of byte 15 is 0, plus bit 31
        Assert.Equal(b, Encode(GgmlType.Q5_1, y));
    }

    [Fact]
    public void Q2_KHandBlock()
    {
        var b = Block(GgmlType.Q2_K);
        Half(b, 80, 1f);
        Half(b, 82, 1f);
        b[2] = 0x13;        // sub-block 2 (elements 32–47): scale 3, min 1
        b[16 + 5] = 0x0C;   // element 37 = 32·1 + 5: bits 2–3 of qs[5] = 3
        b[12] = 0x02;       // sub-block 12 (192–207): scale 2, min 0
        b[16 + 32 + 8] = 0x10; // element 200 = 128 + 32·2 + 8: bits 4–5 of qs[40] = 1
        var y = Decode(GgmlType.Q2_K, b);
        Assert.Equal(3f * 3 - 1, y[37]);
        Assert.Equal(-1f, y[36]);
        Assert.Equal(2f, y[200]);
    }

    [Fact]
    public void Q3_KHandBlock()
    {
        var b = Block(GgmlType.Q3_K);
        Half(b, 108, 1f);
        b[96 + 2] = 0x04;  // scale 2 low nibble 4
        b[96 + 10] = 0x02; // scale 2 high bits (byte 8 + 2, bits 0–1) = 2 → 36 → 36 − 32 = 4
        b[32 + 5] = 0x08;  // element 37 (n 0, j 1, l 5): low bits 2
        b[5] = 0x02;       // hmask[5] bit 1 set: no −4
        b[96 + 1] = 0x50;  // scale 9 low nibble = high nibble of byte 1 = 5
        b[96 + 9] = 0x10;  // scale 9 high bits (byte 8 + 1, bits 4–5) = 1 → 21 → −11
        b[32 + 32 + 22] = 0x01; // element 150 (n 1, j 0, l 22): low bits 1, hmask[22] bit 4 clear: 1 − 4 = −3
        var y = Decode(GgmlType.Q3_K, b);
        Assert.Equal(8f, y[37]);
        Assert.Equal(33f, y[150]);
        Assert.Equal(128f, y[0]); // scale 0 = −32, code 0 without its high bit = −4
    }

    [Fact]
    public void Q4_KHandBlock()
    {
        var b = Block(GgmlType.Q4_K);
        Half(b, 0, 1f);
        Half(b, 2, 0.5f);
        b[4 + 1] = 5;     // sub-block 1 scale
        b[4 + 5] = 3;     // sub-block 1 min
        b[4 + 10] = 0x21; // sub-block 6: scale low 1, min low 2
        b[4 + 2] = 0x40;  // sub-block 6 scale bits 4–5 from byte 2 bits 6–7 → 17
        b[4 + 6] = 0x80;  // sub-block 6 min bits 4–5 from byte 6 bits 6–7 → 34
        b[16 + 1] = 0x70; // element 33 (second half of chunk 0): high nibble 7
        b[16 + 104] = 0x0B; // element 200 = 64·3 + 8: low nibble of qs[104] = 11
        var y = Decode(GgmlType.Q4_K, b);
        Assert.Equal(5f * 7 - 0.5f * 3, y[33]);
        Assert.Equal(17f * 11 - 0.5f * 34, y[200]);
        Assert.Equal(0f, y[1]);
    }

    [Fact]
    public void Q5_KHandBlock()
    {
        var b = Block(GgmlType.Q5_K);
        Half(b, 0, 1f);
        Half(b, 2, 1f);
        b[4 + 3] = 2;       // sub-block 3 (elements 96–127) scale
        b[4 + 7] = 5;       // its min
        b[48 + 33] = 0x60;  // element 97 (chunk 1, second half, l 1): high nibble of qs[33] = 6
        b[16 + 1] = 0x08;   // qh[1] bit 2·1 + 1 = 3: +16
        var y = Decode(GgmlType.Q5_K, b);
        Assert.Equal(2f * 22 - 5, y[97]);
        Assert.Equal(-5f, y[96]);
    }

    [Fact]
    public void Q6_KHandBlock()
    {
        var b = Block(GgmlType.Q6_K);
        Half(b, 208, 0.5f);
        b[6] = 0x30;                      // element 70 (n 0, part 2, l 6): high nibble of ql[6] = 3
        b[128 + 6] = 0x20;                // qh[6] bits 4–5 = 2 → code 35 → 3
        b[192 + 4] = unchecked((byte)-2); // scale of sub-block 4
        b[64 + 32 + 6] = 0x0F;            // element 166 (n 1, part 1, l 6): low nibble of ql[102] = 15
        b[128 + 32 + 6] = 0x04;           // qh[38] bits 2–3 = 1 → code 31 → −1
        b[192 + 10] = 4;
        var y = Decode(GgmlType.Q6_K, b);
        Assert.Equal(0.5f * -2 * 3, y[70]);
        Assert.Equal(0.5f * 4 * -1, y[166]);
        Assert.Equal(0f, y[0]);
    }

    /// <summary>Canonical K-quant blocks: every sub-scale (and min) at its top level, every sub-block's codes spanning
    /// the range; quantizing their values must give the same bytes.</summary>
    [Theory]
    [InlineData(GgmlType.Q2_K)]
    [InlineData(GgmlType.Q3_K)]
    [InlineData(GgmlType.Q4_K)]
    [InlineData(GgmlType.Q5_K)]
    [InlineData(GgmlType.Q6_K)]
    public void CanonicalKBlocksRoundTripBitExactly(GgmlType type)
    {
        var rng = new Random(5);
        var b = Block(type);
        switch (type)
        {
            case GgmlType.Q2_K:
                for (var s = 0; s < 16; s++) b[s] = 0xFF;
                Half(b, 80, 0.125f);
                Half(b, 82, 0.0625f);
                for (var i = 16; i < 80; i++) b[i] = (byte)rng.Next(256);
                for (var s = 0; s < 16; s++) // codes 0 and 3 in every sub-block: elements 16s and 16s+1
                {
                    SetQ2(b, 16 * s, 0);
                    SetQ2(b, 16 * s + 1, 3);
                }
                break;
            case GgmlType.Q3_K:
                Half(b, 108, -0.0625f); // every scale stored 0 (−32): sub-scale 2
                for (var i = 0; i < 96; i++) b[i] = (byte)rng.Next(256);
                for (var s = 0; s < 16; s++) // element 16s: code 0 (q = −4), low bits and hmask bit clear
                {
                    var e = 16 * s;
                    var (n, j, l) = (e / 128, e % 128 / 32, e % 32);
                    b[32 + 32 * n + l] &= (byte)~(3 << (2 * j));
                    b[l] &= (byte)~(1 << (4 * n + j));
                }
                break;
            case GgmlType.Q4_K:
            case GgmlType.Q5_K:
                Half(b, 0, 1f / 64);
                Half(b, 2, 1f / 128);
                for (var i = 4; i < 16; i++) b[i] = 0xFF; // every 6-bit scale and min = 63
                for (var i = 16; i < b.Length; i++) b[i] = (byte)rng.Next(256);
                var qs = type == GgmlType.Q5_K ? 48 : 16;
                for (var s = 0; s < 8; s++) // element 32s: code 0; element 32s+1: top code
                {
                    var (k, shift) = (s / 2, 4 * (s % 2));
                    b[qs + 32 * k] &= (byte)~(0xF << shift);
                    b[qs + 32 * k + 1] |= (byte)(0xF << shift);
                    if (type == GgmlType.Q5_K)
                    {
                        b[16] &= (byte)~(1 << s);
                        b[17] |= (byte)(1 << s);
                    }
                }
                break;
            case GgmlType.Q6_K:
                Half(b, 208, -1f / 128);
                for (var s = 0; s < 16; s++) b[192 + s] = unchecked((byte)-128);
                for (var i = 0; i < 192; i++) b[i] = (byte)rng.Next(256);
                for (var s = 0; s < 16; s++) // element 16s: code 0 (q = −32)
                {
                    var e = 16 * s;
                    var (n, part, l) = (e / 128, e % 128 / 32, e % 32);
                    b[64 * n + (part % 2) * 32 + l] &= (byte)~(0xF << (part < 2 ? 0 : 4));
                    b[128 + 32 * n + l] &= (byte)~(3 << (2 * part));
                }
                break;
        }
        var y = Decode(type, b);
        Assert.Equal(b, Encode(type, y));
    }

    private static void SetQ2(byte[] b, int e, int code)
    {
        var at = 16 + 32 * (e / 128) + e % 32;
        var shift = 2 * (e % 128 / 32);
        b[at] = (byte)((b[at] & ~(3 << shift)) | (code << shift));
    }

    [Theory]
    [InlineData(GgmlType.Q8_0, 0.01)]
    [InlineData(GgmlType.Q6_K, 0.03)]
    [InlineData(GgmlType.Q5_K, 0.06)]
    [InlineData(GgmlType.Q5_0, 0.08)]
    [InlineData(GgmlType.Q4_K, 0.12)]
    [InlineData(GgmlType.Q4_1, 0.12)]
    [InlineData(GgmlType.Q4_0, 0.15)]
    [InlineData(GgmlType.Q3_K, 0.25)]
    [InlineData(GgmlType.Q2_K, 0.5)]
    public void GaussianRowsQuantizeWithinTheirResolution(GgmlType type, double maxRelativeRms)
    {
        // Bounds: a b-bit uniform grid over ±3σ has RMS error ≈ 6σ / 2^b / √12; each bound is ~2× that for b.
        var rng = new Random(11);
        var x = Enumerable.Range(0, 1024).Select(_ => (float)(Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble()))).ToArray();
        var back = new float[x.Length];
        GgmlCodec.DequantizeRow(type, Encode(type, x), back);
        var err = Math.Sqrt(x.Zip(back, (a, b) => (double)(a - b) * (a - b)).Average() / x.Average(v => (double)v * v));
        Assert.InRange(err, 0, maxRelativeRms);
    }

    [Theory]
    [InlineData(GgmlType.Q4_0)]
    [InlineData(GgmlType.Q4_K)]
    [InlineData(GgmlType.Q3_K)]
    [InlineData(GgmlType.Q2_K)]
    public void ImportanceWeightsLowerTheWeightedError(GgmlType type)
    {
        var rng = new Random(3);
        var x = Enumerable.Range(0, 2048).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var w = Enumerable.Range(0, 2048).Select(i => i % 7 == 0 ? 50f : 0.1f).ToArray();
        double Weighted(byte[] bytes)
        {
            var back = new float[x.Length];
            GgmlCodec.DequantizeRow(type, bytes, back);
            return Enumerable.Range(0, x.Length).Sum(i => w[i] * (double)(x[i] - back[i]) * (x[i] - back[i]));
        }
        Assert.True(Weighted(Encode(type, x, w)) < 0.9 * Weighted(Encode(type, x)));
    }

    [Fact]
    public void FloatTypesAreExactOrRoundToNearestEven()
    {
        float[] x = [1f, -2.5f, 1.00390625f, 1.01171875f, 3.3f];
        var bf = Encode(GgmlType.BF16, x);
        Assert.Equal(0x3F80, BinaryPrimitives.ReadUInt16LittleEndian(bf));
        Assert.Equal(0x3F80, BinaryPrimitives.ReadUInt16LittleEndian(bf.AsSpan(4))); // tie → even
        Assert.Equal(0x3F82, BinaryPrimitives.ReadUInt16LittleEndian(bf.AsSpan(6))); // tie → even (up)
        var f16 = Encode(GgmlType.F16, x);
        Assert.Equal(0x3C00, BinaryPrimitives.ReadUInt16LittleEndian(f16));
        var back = new float[x.Length];
        GgmlCodec.DequantizeRow(GgmlType.F32, Encode(GgmlType.F32, x), back);
        Assert.Equal(x, back);
    }

    [Theory]
    [InlineData(GgmlType.Q4_K, 192, GgmlType.Q5_0)]
    [InlineData(GgmlType.Q5_K, 384, GgmlType.Q5_1)]
    [InlineData(GgmlType.Q6_K, 192, GgmlType.Q8_0)]
    [InlineData(GgmlType.Q2_K, 64, GgmlType.Q4_0)]
    [InlineData(GgmlType.Q3_K, 96, GgmlType.Q4_0)]
    [InlineData(GgmlType.Q4_K, 100, GgmlType.F16)]
    [InlineData(GgmlType.Q8_0, 100, GgmlType.F16)]
    [InlineData(GgmlType.Q4_K, 512, GgmlType.Q4_K)]
    public void RowsThatAreNotWholeBlocksFallBackAsLlamaQuantize(GgmlType requested, long row, GgmlType expected) =>
        Assert.Equal(expected, requested.FallbackFor(row));
}
