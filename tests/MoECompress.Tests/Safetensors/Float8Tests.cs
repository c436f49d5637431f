using MoECompress.Formats.Safetensors;

namespace MoECompress.Tests.Safetensors;

public class Float8Tests
{
    // Values computed by hand from the bit layouts: E4M3FN = s.eeee.mmm (bias 7), E5M2 = s.eeeee.mm (bias 15).
    [Theory]
    [InlineData(0x00, 0.0f)]
    [InlineData(0x01, 0.001953125f)]      // subnormal 1/8 · 2^-6 = 2^-9
    [InlineData(0x07, 0.013671875f)]      // subnormal 7/8 · 2^-6
    [InlineData(0x08, 0.015625f)]         // smallest normal 2^-6
    [InlineData(0x38, 1.0f)]              // e=7, m=0
    [InlineData(0x3C, 1.5f)]              // e=7, m=4
    [InlineData(0x40, 2.0f)]
    [InlineData(0x4B, 5.5f)]              // 0 1001 011: (1 + 3/8) · 2^(9-7)
    [InlineData(0x78, 256.0f)]            // e=15, m=0 is finite in the "fn" variant
    [InlineData(0x7E, 448.0f)]            // largest finite
    [InlineData(0xB8, -1.0f)]
    [InlineData(0xFE, -448.0f)]
    public void DecodesE4M3(int code, float expected) => Assert.Equal(expected, Float8.DecodeE4M3((byte)code));

    [Fact]
    public void E4M3NegativeZeroAndNaNs()
    {
        float negZero = Float8.DecodeE4M3(0x80);
        Assert.Equal(0f, negZero);
        Assert.True(float.IsNegative(negZero));
        Assert.True(float.IsNaN(Float8.DecodeE4M3(0x7F)));
        Assert.True(float.IsNaN(Float8.DecodeE4M3(0xFF)));
        for (int c = 0; c < 256; c++)
        {
            float v = Float8.DecodeE4M3((byte)c);
            Assert.False(float.IsInfinity(v), $"code 0x{c:X2} decoded to infinity; E4M3FN has none");
            if (c is not (0x7F or 0xFF)) Assert.False(float.IsNaN(v), $"code 0x{c:X2} decoded to NaN");
        }
    }

    [Fact]
    public void E4M3IsMonotonicAndSymmetric()
    {
        for (int c = 1; c <= 0x7E; c++)
            Assert.True(Float8.DecodeE4M3((byte)c) > Float8.DecodeE4M3((byte)(c - 1)), $"not increasing at 0x{c:X2}");
        for (int c = 0; c <= 0x7E; c++)
            Assert.Equal(-Float8.DecodeE4M3((byte)c), Float8.DecodeE4M3((byte)(c | 0x80)));
    }

    [Theory]
    [InlineData(0x00, 0.0f)]
    [InlineData(0x01, 1.52587890625e-05f)] // subnormal 1/4 · 2^-14 = 2^-16
    [InlineData(0x03, 4.57763671875e-05f)] // 3/4 · 2^-14
    [InlineData(0x04, 6.103515625e-05f)]   // smallest normal 2^-14
    [InlineData(0x3C, 1.0f)]               // 0 01111 00
    [InlineData(0x3E, 1.5f)]               // 0 01111 10
    [InlineData(0x7B, 57344.0f)]           // 0 11110 11: 1.75 · 2^15
    [InlineData(0xC0, -2.0f)]              // 1 10000 00
    public void DecodesE5M2(int code, float expected) => Assert.Equal(expected, Float8.DecodeE5M2((byte)code));

    [Fact]
    public void E5M2InfinitiesAndNaNs()
    {
        Assert.Equal(float.PositiveInfinity, Float8.DecodeE5M2(0x7C));
        Assert.Equal(float.NegativeInfinity, Float8.DecodeE5M2(0xFC));
        foreach (var c in new byte[] { 0x7D, 0x7E, 0x7F, 0xFD, 0xFE, 0xFF }) Assert.True(float.IsNaN(Float8.DecodeE5M2(c)));
    }

    [Fact]
    public void E5M2IsTheUpperByteOfAHalfForAll256Codes()
    {
        // Independent oracle: .NET's IEEE half. E5M2 is a half with the low 8 mantissa bits cut off.
        for (int c = 0; c < 256; c++)
        {
            float viaHalf = (float)BitConverter.UInt16BitsToHalf((ushort)(c << 8));
            float decoded = Float8.DecodeE5M2((byte)c);
            if (float.IsNaN(viaHalf)) Assert.True(float.IsNaN(decoded), $"0x{c:X2}");
            else Assert.Equal(BitConverter.SingleToInt32Bits(viaHalf), BitConverter.SingleToInt32Bits(decoded));
        }
    }

    [Fact]
    public void BulkDecodeUsesTheTables()
    {
        var codes = Enumerable.Range(0, 256).Select(i => (byte)i).ToArray();
        var e4 = new float[256];
        var e5 = new float[256];
        Float8.Decode(SafetensorsDType.F8_E4M3, codes, e4);
        Float8.Decode(SafetensorsDType.F8_E5M2, codes, e5);
        for (int i = 0; i < 256; i++)
        {
            Assert.Equal(BitConverter.SingleToInt32Bits(Float8.DecodeE4M3((byte)i)), BitConverter.SingleToInt32Bits(e4[i]));
            Assert.Equal(BitConverter.SingleToInt32Bits(Float8.DecodeE5M2((byte)i)), BitConverter.SingleToInt32Bits(e5[i]));
        }
        Assert.Throws<ArgumentException>(() => Float8.Decode(SafetensorsDType.F16, codes, e4));
    }
}
