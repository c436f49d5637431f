namespace MoECompress.Formats.Gguf;

/// <summary>
/// The K-quants: 256-element super-blocks of 16 or 32-element sub-blocks whose scales (and mins) are themselves
/// quantized against one fp16 super-scale (ggml-common.h block_q2_K … block_q6_K). Sub-block s covers elements
/// [16·s, 16·s+16) (Q2_K, Q3_K, Q6_K) or [32·s, 32·s+32) (Q4_K, Q5_K). Byte layouts, as ggml-quants.c dequantizes them:
/// <list type="bullet">
/// <item>Q2_K (84 B): scales[16] (low nibble scale, high nibble min), qs[64], d, dmin; x̂ = d·sc·c − dmin·m, c ∈ [0,3];
/// element 128n+32j+l (l &lt; 32) has its code in qs[32n+l] bits 2j..2j+1.</item>
/// <item>Q3_K (110 B): hmask[32], qs[64], scales[12] (16 six-bit values, stored +32), d; x̂ = d·(s−32)·q, q ∈ [−4,3]:
/// the low two bits of q+4 as in Q2_K, its third bit in hmask[l] bit 4n+j.</item>
/// <item>Q4_K (144 B): d, dmin, scales[12] (8 six-bit scales and mins, get_scale_min_k4), qs[128]; x̂ = d·sc·c − dmin·m,
/// c ∈ [0,15]; elements 64k+l and 64k+32+l share qs[32k+l] (low, high nibble).</item>
/// <item>Q5_K (176 B): d, dmin, scales[12], qh[32], qs[128]; as Q4_K with c ∈ [0,31], the fifth bit of element
/// 64k+l in qh[l] bit 2k and of 64k+32+l in qh[l] bit 2k+1.</item>
/// <item>Q6_K (210 B): ql[128], qh[64], scales[16] (int8), d; x̂ = d·sc·(c−32), c ∈ [0,63]; for n ∈ {0,1}, l &lt; 32 the
/// elements 128n+l, +32, +64, +96 take the low nibbles of ql[64n+l], ql[64n+32+l], then their high nibbles, and bit
/// pairs 0,2,4,6 of qh[32n+l].</item>
/// </list>
/// </summary>
internal static class GgmlKQuantCodec
{
    public static void Quantize(GgmlType type, ReadOnlySpan<float> x, ReadOnlySpan<float> w, Span<byte> dst)
    {
        dst.Clear();
        switch (type)
        {
            case GgmlType.Q2_K: QuantizeQ2K(x, w, dst); break;
            case GgmlType.Q3_K: QuantizeQ3K(x, w, dst); break;
            case GgmlType.Q4_K: QuantizeQ45K(x, w, dst, 4); break;
            case GgmlType.Q5_K: QuantizeQ45K(x, w, dst, 5); break;
            case GgmlType.Q6_K: QuantizeQ6K(x, w, dst); break;
            default: throw new ArgumentOutOfRangeException(nameof(type), type, "not a K-quant");
        }
    }

    public static void Dequantize(GgmlType type, ReadOnlySpan<byte> b, Span<float> y)
    {
        switch (type)
        {
            case GgmlType.Q2_K:
            {
                float d = GgmlCodec.Half16(b, 80), dmin = GgmlCodec.Half16(b, 82);
                for (var e = 0; e < 256; e++)
                {
                    var sc = b[e / 16];
                    y[e] = d * (sc & 0xF) * Q2Code(b, e) - dmin * (sc >> 4);
                }
                break;
            }
            case GgmlType.Q3_K:
            {
                var d = GgmlCodec.Half16(b, 108);
                Span<int> s = stackalloc int[16];
                UnpackQ3Scales(b.Slice(96, 12), s);
                for (var e = 0; e < 256; e++)
                {
                    var (n, j, l) = (e / 128, e % 128 / 32, e % 32);
                    var low = (b[32 + 32 * n + l] >> (2 * j)) & 3;
                    var high = (b[l] >> (4 * n + j)) & 1;
                    y[e] = d * (s[e / 16] - 32) * (low - (high != 0 ? 0 : 4));
                }
                break;
            }
            case GgmlType.Q4_K:
            case GgmlType.Q5_K:
            {
                float d = GgmlCodec.Half16(b, 0), dmin = GgmlCodec.Half16(b, 2);
                var five = type == GgmlType.Q5_K;
                var qs = b.Slice(five ? 48 : 16, 128);
                for (var e = 0; e < 256; e++)
                {
                    var (k, half, l) = (e / 64, e % 64 / 32, e % 32);
                    var c = half == 0 ? qs[32 * k + l] & 0xF : qs[32 * k + l] >> 4;
                    if (five) c |= ((b[16 + l] >> (2 * k + half)) & 1) << 4;
                    var (sc, m) = ScaleMinK4(e / 32, b.Slice(4, 12));
                    y[e] = d * sc * c - dmin * m;
                }
                break;
            }
            case GgmlType.Q6_K:
            {
                var d = GgmlCodec.Half16(b, 208);
                for (var e = 0; e < 256; e++) y[e] = d * (sbyte)b[192 + e / 16] * (Q6Code(b, e) - 32);
                break;
            }
            default: throw new ArgumentOutOfRangeException(nameof(type), type, "not a K-quant");
        }
    }

    private static int Q2Code(ReadOnlySpan<byte> b, int e) => (b[16 + 32 * (e / 128) + e % 32] >> (2 * (e % 128 / 32))) & 3;

    private static int Q6Code(ReadOnlySpan<byte> b, int e)
    {
        var (n, part, l) = (e / 128, e % 128 / 32, e % 32);
        var ql = b[64 * n + (part % 2) * 32 + l];
        var low = part < 2 ? ql & 0xF : ql >> 4;
        var high = (b[128 + 32 * n + l] >> (2 * part)) & 3;
        return low | (high << 4);
    }

    /// <summary>get_scale_min_k4: sub-block j's 6-bit scale and min from the 12 packed bytes.</summary>
    internal static (int Scale, int Min) ScaleMinK4(int j, ReadOnlySpan<byte> q) => j < 4
        ? (q[j] & 63, q[j + 4] & 63)
        : ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4));

    private static void PackScaleMinK4(ReadOnlySpan<int> scales, ReadOnlySpan<int> mins, Span<byte> q)
    {
        for (var j = 0; j < 8; j++)
        {
            int s = scales[j], m = mins[j];
            if (j < 4)
            {
                q[j] |= (byte)s;
                q[j + 4] |= (byte)m;
            }
            else
            {
                q[j + 4] = (byte)((s & 0xF) | ((m & 0xF) << 4));
                q[j - 4] |= (byte)((s >> 4) << 6);
                q[j] |= (byte)((m >> 4) << 6);
            }
        }
    }

    /// <summary>The 16 six-bit Q3_K scales: low nibbles of bytes 0–7 (scales 0–7) and their high nibbles (8–15); the top
    /// two bits of scale i in byte 8 + i % 4 at bit 2·(i / 4).</summary>
    internal static void UnpackQ3Scales(ReadOnlySpan<byte> p, Span<int> s)
    {
        for (var i = 0; i < 16; i++)
        {
            var low = i < 8 ? p[i] & 0xF : p[i - 8] >> 4;
            var high = (p[8 + i % 4] >> (2 * (i / 4))) & 3;
            s[i] = low | (high << 4);
        }
    }

    private static void PackQ3Scales(ReadOnlySpan<int> s, Span<byte> p)
    {
        for (var i = 0; i < 16; i++)
        {
            if (i < 8) p[i] |= (byte)(s[i] & 0xF);
            else p[i - 8] |= (byte)((s[i] & 0xF) << 4);
            p[8 + i % 4] |= (byte)(((s[i] >> 4) & 3) << (2 * (i / 4)));
        }
    }

    /// <summary>Quantizes sub-scales against a super-scale: l = clamp(round(v·levels/max)), returning max/levels.</summary>
    private static float SuperScale(ReadOnlySpan<float> values, int levels, Span<int> l)
    {
        float max = 0;
        foreach (var v in values) max = MathF.Max(max, v);
        var inv = max > 0 ? levels / max : 0;
        for (var i = 0; i < values.Length; i++) l[i] = Math.Clamp((int)MathF.Round(inv * values[i]), 0, levels);
        return max / levels;
    }

    /// <summary>Q3_K / Q6_K: 16 symmetric sub-blocks of 16 (codes in [−nmax, nmax−1]) whose signed scales are quantized to
    /// [−levels, levels−1] against one fp16 super-scale written at <paramref name="dAt"/> (the largest-magnitude scale
    /// maps to −levels). Returns the stored super-scale; <paramref name="l"/> gets the scale levels.</summary>
    private static float SignedSubScales(ReadOnlySpan<float> x, ReadOnlySpan<float> w, int nmax, int levels, Span<int> q, Span<int> l,
        Span<byte> dst, int dAt)
    {
        Span<float> scales = stackalloc float[16];
        float maxScale = 0, amax = 0;
        for (var s = 0; s < 16; s++)
        {
            scales[s] = GgmlScaleFit.Symmetric(x.Slice(16 * s, 16), w.IsEmpty ? w : w.Slice(16 * s, 16), nmax, q.Slice(16 * s, 16));
            if (MathF.Abs(scales[s]) > amax) { amax = MathF.Abs(scales[s]); maxScale = scales[s]; }
        }
        if (amax == 0) return 0;
        var iscale = -levels / maxScale;
        for (var s = 0; s < 16; s++) l[s] = Math.Clamp((int)MathF.Round(iscale * scales[s]), -levels, levels - 1);
        return GgmlCodec.WriteHalf(dst, dAt, 1 / iscale);
    }

    private static void QuantizeQ2K(ReadOnlySpan<float> x, ReadOnlySpan<float> w, Span<byte> dst)
    {
        Span<float> scales = stackalloc float[16], mins = stackalloc float[16];
        Span<int> q = stackalloc int[256], ls = stackalloc int[16], lm = stackalloc int[16];
        for (var s = 0; s < 16; s++)
        {
            var (d, m) = GgmlScaleFit.Affine(x.Slice(16 * s, 16), w.IsEmpty ? w : w.Slice(16 * s, 16), 3, q.Slice(16 * s, 16), true);
            scales[s] = d;
            mins[s] = -m;
        }
        var dd = GgmlCodec.WriteHalf(dst, 80, SuperScale(scales, 15, ls));
        var dm = GgmlCodec.WriteHalf(dst, 82, SuperScale(mins, 15, lm));
        for (var s = 0; s < 16; s++)
        {
            dst[s] = (byte)(ls[s] | (lm[s] << 4));
            GgmlCodec.Requantize(x.Slice(16 * s, 16), dd * ls[s], -dm * lm[s], 0, 3, q.Slice(16 * s, 16));
        }
        for (var e = 0; e < 256; e++) dst[16 + 32 * (e / 128) + e % 32] |= (byte)(q[e] << (2 * (e % 128 / 32)));
    }

    private static void QuantizeQ3K(ReadOnlySpan<float> x, ReadOnlySpan<float> w, Span<byte> dst)
    {
        Span<int> q = stackalloc int[256], l = stackalloc int[16];
        var d = SignedSubScales(x, w, 4, 32, q, l, dst, 108);
        for (var s = 0; s < 16; s++)
        {
            GgmlCodec.Requantize(x.Slice(16 * s, 16), d * l[s], 0, -4, 3, q.Slice(16 * s, 16));
            l[s] += 32;
        }
        PackQ3Scales(l, dst.Slice(96, 12));
        for (var e = 0; e < 256; e++)
        {
            var c = q[e] + 4;
            var (n, j, i) = (e / 128, e % 128 / 32, e % 32);
            dst[32 + 32 * n + i] |= (byte)((c & 3) << (2 * j));
            dst[i] |= (byte)((c >> 2) << (4 * n + j));
        }
    }

    private static void QuantizeQ45K(ReadOnlySpan<float> x, ReadOnlySpan<float> w, Span<byte> dst, int bits)
    {
        var nmax = (1 << bits) - 1;
        Span<float> scales = stackalloc float[8], mins = stackalloc float[8];
        Span<int> q = stackalloc int[256], ls = stackalloc int[8], lm = stackalloc int[8];
        for (var s = 0; s < 8; s++)
        {
            var (d, m) = GgmlScaleFit.Affine(x.Slice(32 * s, 32), w.IsEmpty ? w : w.Slice(32 * s, 32), nmax, q.Slice(32 * s, 32), true);
            scales[s] = d;
            mins[s] = -m;
        }
        var dd = GgmlCodec.WriteHalf(dst, 0, SuperScale(scales, 63, ls));
        var dm = GgmlCodec.WriteHalf(dst, 2, SuperScale(mins, 63, lm));
        PackScaleMinK4(ls, lm, dst.Slice(4, 12));
        for (var s = 0; s < 8; s++) GgmlCodec.Requantize(x.Slice(32 * s, 32), dd * ls[s], -dm * lm[s], 0, nmax, q.Slice(32 * s, 32));
        var qs = dst.Slice(bits == 5 ? 48 : 16, 128);
        for (var e = 0; e < 256; e++)
        {
            var (k, half, i) = (e / 64, e % 64 / 32, e % 32);
            qs[32 * k + i] |= (byte)((q[e] & 0xF) << (4 * half));
            if (bits == 5) dst[16 + i] |= (byte)((q[e] >> 4) << (2 * k + half));
        }
    }

    private static void QuantizeQ6K(ReadOnlySpan<float> x, ReadOnlySpan<float> w, Span<byte> dst)
    {
        Span<int> q = stackalloc int[256], l = stackalloc int[16];
        var d = SignedSubScales(x, w, 32, 128, q, l, dst, 208);
        for (var s = 0; s < 16; s++)
        {
            dst[192 + s] = (byte)(sbyte)l[s];
            GgmlCodec.Requantize(x.Slice(16 * s, 16), d * l[s], 0, -32, 31, q.Slice(16 * s, 16));
        }
        for (var e = 0; e < 256; e++)
        {
            var c = q[e] + 32;
            var (n, part, i) = (e / 128, e % 128 / 32, e % 32);
            dst[64 * n + (part % 2) * 32 + i] |= (byte)((c & 0xF) << (part < 2 ? 0 : 4));
            dst[128 + 32 * n + i] |= (byte)((c >> 4) << (2 * part));
        }
    }
}
