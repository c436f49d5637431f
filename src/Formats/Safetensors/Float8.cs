namespace MoECompress.Formats.Safetensors;

/// <summary>
/// Decoding of the two FP8 formats safetensors stores (TorchSharp has no FP8 type).
/// <list type="bullet">
/// <item><b>F8_E4M3</b> = PyTorch <c>float8_e4m3fn</c>: 1 sign, 4 exponent (bias 7), 3 mantissa bits; no infinities;
/// S.1111.111 (0x7F, 0xFF) is NaN, so 0x78 (S.1111.000) is the finite 256 and the largest value is 448;
/// exponent 0 is subnormal: m/8 · 2^-6.</item>
/// <item><b>F8_E5M2</b> = PyTorch <c>float8_e5m2</c>: 1 sign, 5 exponent (bias 15), 2 mantissa bits, IEEE-like:
/// exponent 31 with mantissa 0 is ±inf, otherwise NaN; largest finite 57344; exponent 0 is subnormal m/4 · 2^-14.
/// (It is the upper byte of an IEEE half.)</item>
/// </list>
/// Every FP8 value is exactly representable in float32, so decoding is exact.
/// </summary>
public static class Float8
{
    private static readonly float[] E4M3Table = BuildTable(DecodeE4M3Slow);
    private static readonly float[] E5M2Table = BuildTable(DecodeE5M2Slow);

    /// <summary>Value of one F8_E4M3 (e4m3fn) code.</summary>
    public static float DecodeE4M3(byte code) => E4M3Table[code];

    /// <summary>Value of one F8_E5M2 code.</summary>
    public static float DecodeE5M2(byte code) => E5M2Table[code];

    /// <summary>The 256-entry decode table of an FP8 dtype.</summary>
    public static ReadOnlySpan<float> Table(SafetensorsDType dtype) => dtype switch
    {
        SafetensorsDType.F8_E4M3 => E4M3Table,
        SafetensorsDType.F8_E5M2 => E5M2Table,
        _ => throw new ArgumentException($"{dtype} is not an FP8 dtype", nameof(dtype)),
    };

    /// <summary>Decodes <paramref name="codes"/> into <paramref name="destination"/> (same length).</summary>
    public static void Decode(SafetensorsDType dtype, ReadOnlySpan<byte> codes, Span<float> destination)
    {
        if (destination.Length < codes.Length)
            throw new ArgumentException("destination is shorter than the source", nameof(destination));
        var table = Table(dtype);
        for (int i = 0; i < codes.Length; i++) destination[i] = table[codes[i]];
    }

    private static float[] BuildTable(Func<byte, float> decode)
    {
        var t = new float[256];
        for (int i = 0; i < 256; i++) t[i] = decode((byte)i);
        return t;
    }

    private static float DecodeE4M3Slow(byte b)
    {
        int sign = b >> 7, exp = (b >> 3) & 0xF, man = b & 0x7;
        if (exp == 0xF && man == 0x7) return float.NaN;
        float magnitude = exp == 0
            ? MathF.ScaleB(man / 8f, -6)
            : MathF.ScaleB(1f + man / 8f, exp - 7);
        return sign != 0 ? -magnitude : magnitude;
    }

    private static float DecodeE5M2Slow(byte b)
    {
        int sign = b >> 7, exp = (b >> 2) & 0x1F, man = b & 0x3;
        float magnitude;
        if (exp == 0x1F) magnitude = man == 0 ? float.PositiveInfinity : float.NaN;
        else if (exp == 0) magnitude = MathF.ScaleB(man / 4f, -14);
        else magnitude = MathF.ScaleB(1f + man / 4f, exp - 15);
        return sign != 0 ? -magnitude : magnitude;
    }
}
