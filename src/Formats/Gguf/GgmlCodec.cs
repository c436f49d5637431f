using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace MoECompress.Formats.Gguf;

/// <summary>
/// Packs rows of float32 values into ggml blocks and unpacks them, bit for bit in the layouts of llama.cpp's
/// ggml-common.h (block_q8_0, block_q4_0, …, block_q6_K) with the dequantization of ggml-quants.c. Quantization takes
/// optional per-element weights (an importance matrix row: Σx² of the inputs that multiply each column) and then
/// minimises the weighted squared error of each block; without weights it minimises the plain squared error
/// around the range-based scale (round to nearest). The K-quant parts live in <see cref="GgmlKQuantCodec"/>.
/// </summary>
public static class GgmlCodec
{
    /// <summary>Quantizes one row <paramref name="x"/> (a whole number of blocks) into <paramref name="destination"/>
    /// (<see cref="GgmlTypes.RowBytes"/> bytes). <paramref name="weights"/> is empty or one weight per element.</summary>
    public static void QuantizeRow(GgmlType type, ReadOnlySpan<float> x, ReadOnlySpan<float> weights, Span<byte> destination)
    {
        if (!weights.IsEmpty && weights.Length != x.Length)
            throw new ArgumentException($"{weights.Length} weights for a row of {x.Length}", nameof(weights));
        var rowBytes = type.RowBytes(x.Length);
        if (destination.Length != rowBytes)
            throw new ArgumentException($"a {type} row of {x.Length} elements takes {rowBytes} bytes, not {destination.Length}", nameof(destination));
        switch (type)
        {
            case GgmlType.F32:
                MemoryMarshal.AsBytes(x).CopyTo(destination);
                return;
            case GgmlType.F16:
                for (var i = 0; i < x.Length; i++) BinaryPrimitives.WriteHalfLittleEndian(destination[(2 * i)..], (Half)x[i]);
                return;
            case GgmlType.BF16:
                for (var i = 0; i < x.Length; i++) BinaryPrimitives.WriteUInt16LittleEndian(destination[(2 * i)..], ToBFloat16(x[i]));
                return;
        }
        var n = type.BlockSize();
        var size = type.BlockBytes();
        for (int b = 0, blocks = x.Length / n; b < blocks; b++)
        {
            var xs = x.Slice(b * n, n);
            var ws = weights.IsEmpty ? weights : weights.Slice(b * n, n);
            var dst = destination.Slice(b * size, size);
            switch (type)
            {
                case GgmlType.Q8_0: QuantizeQ8_0(xs, dst); break;
                case GgmlType.Q4_0: QuantizeSymmetric32(xs, ws, dst, 4); break;
                case GgmlType.Q5_0: QuantizeSymmetric32(xs, ws, dst, 5); break;
                case GgmlType.Q4_1: QuantizeAffine32(xs, ws, dst, 4); break;
                case GgmlType.Q5_1: QuantizeAffine32(xs, ws, dst, 5); break;
                default: GgmlKQuantCodec.Quantize(type, xs, ws, dst); break;
            }
        }
    }

    /// <summary>Dequantizes one row of <paramref name="type"/> blocks into <paramref name="destination"/> (its element count).</summary>
    public static void DequantizeRow(GgmlType type, ReadOnlySpan<byte> source, Span<float> destination)
    {
        var rowBytes = type.RowBytes(destination.Length);
        if (source.Length != rowBytes)
            throw new ArgumentException($"a {type} row of {destination.Length} elements takes {rowBytes} bytes, not {source.Length}", nameof(source));
        switch (type)
        {
            case GgmlType.F32:
                source.CopyTo(MemoryMarshal.AsBytes(destination));
                return;
            case GgmlType.F16:
                for (var i = 0; i < destination.Length; i++) destination[i] = (float)BinaryPrimitives.ReadHalfLittleEndian(source[(2 * i)..]);
                return;
            case GgmlType.BF16:
                for (var i = 0; i < destination.Length; i++)
                    destination[i] = BitConverter.Int32BitsToSingle(BinaryPrimitives.ReadUInt16LittleEndian(source[(2 * i)..]) << 16);
                return;
        }
        var n = type.BlockSize();
        var size = type.BlockBytes();
        for (int b = 0, blocks = destination.Length / n; b < blocks; b++)
        {
            var src = source.Slice(b * size, size);
            var y = destination.Slice(b * n, n);
            switch (type)
            {
                case GgmlType.Q8_0:
                {
                    var d = Half16(src, 0);
                    for (var i = 0; i < 32; i++) y[i] = d * (sbyte)src[2 + i];
                    break;
                }
                case GgmlType.Q4_0:
                {
                    var d = Half16(src, 0);
                    for (var j = 0; j < 16; j++)
                    {
                        y[j] = d * ((src[2 + j] & 0xF) - 8);
                        y[j + 16] = d * ((src[2 + j] >> 4) - 8);
                    }
                    break;
                }
                case GgmlType.Q4_1:
                {
                    float d = Half16(src, 0), m = Half16(src, 2);
                    for (var j = 0; j < 16; j++)
                    {
                        y[j] = d * (src[4 + j] & 0xF) + m;
                        y[j + 16] = d * (src[4 + j] >> 4) + m;
                    }
                    break;
                }
                case GgmlType.Q5_0:
                {
                    var d = Half16(src, 0);
                    var qh = BinaryPrimitives.ReadUInt32LittleEndian(src[2..]);
                    for (var j = 0; j < 16; j++)
                    {
                        y[j] = d * (((src[6 + j] & 0xF) | (int)(((qh >> j) & 1) << 4)) - 16);
                        y[j + 16] = d * (((src[6 + j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4)) - 16);
                    }
                    break;
                }
                case GgmlType.Q5_1:
                {
                    float d = Half16(src, 0), m = Half16(src, 2);
                    var qh = BinaryPrimitives.ReadUInt32LittleEndian(src[4..]);
                    for (var j = 0; j < 16; j++)
                    {
                        y[j] = d * ((src[8 + j] & 0xF) | (int)(((qh >> j) & 1) << 4)) + m;
                        y[j + 16] = d * ((src[8 + j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4)) + m;
                    }
                    break;
                }
                default:
                    GgmlKQuantCodec.Dequantize(type, src, y);
                    break;
            }
        }
    }

    /// <summary>Quantizes a whole tensor of <paramref name="rows"/> rows (row-major float32) and returns its bytes.</summary>
    public static byte[] QuantizeRows(GgmlType type, ReadOnlySpan<float> values, long rowElements, ReadOnlySpan<float> rowWeights = default)
    {
        var rows = values.Length / rowElements;
        var rowBytes = type.RowBytes(rowElements);
        var bytes = new byte[rows * rowBytes];
        for (var r = 0; r < rows; r++)
            QuantizeRow(type, values.Slice((int)(r * rowElements), (int)rowElements), rowWeights,
                bytes.AsSpan((int)(r * rowBytes), (int)rowBytes));
        return bytes;
    }

    /// <summary>Dequantizes a whole tensor stored as <paramref name="type"/> into float32.</summary>
    public static void DequantizeRows(GgmlType type, ReadOnlySpan<byte> source, long rowElements, Span<float> destination)
    {
        var rows = destination.Length / rowElements;
        var rowBytes = type.RowBytes(rowElements);
        if (source.Length != rows * rowBytes)
            throw new ArgumentException($"{rows} rows of {rowElements} {type} elements take {rows * rowBytes} bytes, not {source.Length}", nameof(source));
        for (var r = 0; r < rows; r++)
            DequantizeRow(type, source.Slice((int)(r * rowBytes), (int)rowBytes), destination.Slice((int)(r * rowElements), (int)rowElements));
    }

    /// <summary>Round-to-nearest-even float32 → bfloat16 bits (NaN kept quiet).</summary>
    public static ushort ToBFloat16(float value)
    {
        var bits = BitConverter.SingleToUInt32Bits(value);
        if ((bits & 0x7FFFFFFF) > 0x7F800000) return (ushort)((bits >> 16) | 0x40);
        return (ushort)((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
    }

    /// <summary>The fp16 at <paramref name="offset"/> as float.</summary>
    internal static float Half16(ReadOnlySpan<byte> b, int offset) => (float)BinaryPrimitives.ReadHalfLittleEndian(b[offset..]);

    /// <summary>Writes <paramref name="value"/> as fp16 and returns the value the file now holds.</summary>
    internal static float WriteHalf(Span<byte> b, int offset, float value)
    {
        var h = (Half)value;
        BinaryPrimitives.WriteHalfLittleEndian(b[offset..], h);
        return (float)h;
    }

    private static void QuantizeQ8_0(ReadOnlySpan<float> x, Span<byte> dst)
    {
        float amax = 0;
        foreach (var v in x) amax = MathF.Max(amax, MathF.Abs(v));
        var d = WriteHalf(dst, 0, amax / 127f);
        var id = d != 0 ? 1f / d : 0;
        for (var i = 0; i < 32; i++) dst[2 + i] = (byte)(sbyte)Math.Clamp((int)MathF.Round(x[i] * id), -127, 127);
    }

    /// <summary>Q4_0 (bits 4) and Q5_0 (bits 5): x̂ = d·(c − 2^(bits−1)); element j and j+16 share byte j.</summary>
    private static void QuantizeSymmetric32(ReadOnlySpan<float> x, ReadOnlySpan<float> w, Span<byte> dst, int bits)
    {
        var nmax = 1 << (bits - 1);
        Span<int> q = stackalloc int[32];
        var d = WriteHalf(dst, 0, GgmlScaleFit.Symmetric(x, w, nmax, q));
        Requantize(x, d, 0, -nmax, nmax - 1, q);
        PackNibbles(q, nmax, dst, bits == 4 ? 2 : 6, bits == 5 ? dst.Slice(2, 4) : default);
    }

    /// <summary>Q4_1 (bits 4) and Q5_1 (bits 5): x̂ = d·c + m.</summary>
    private static void QuantizeAffine32(ReadOnlySpan<float> x, ReadOnlySpan<float> w, Span<byte> dst, int bits)
    {
        var nmax = (1 << bits) - 1;
        Span<int> q = stackalloc int[32];
        var (scale, offset) = GgmlScaleFit.Affine(x, w, nmax, q, offsetAtMostZero: false);
        var d = WriteHalf(dst, 0, scale);
        var m = WriteHalf(dst, 2, offset);
        Requantize(x, d, m, 0, nmax, q);
        PackNibbles(q, 0, dst, bits == 4 ? 4 : 8, bits == 5 ? dst.Slice(4, 4) : default);
    }

    /// <summary>Recomputes codes against the stored (fp16-rounded) scale and offset: c = clamp(round((x − m) / d)).</summary>
    internal static void Requantize(ReadOnlySpan<float> x, float d, float m, int lo, int hi, Span<int> q)
    {
        if (d == 0)
        {
            for (var i = 0; i < q.Length; i++) q[i] = Math.Clamp(0, lo, hi);
            return;
        }
        var id = 1f / d;
        for (var i = 0; i < q.Length; i++) q[i] = Math.Clamp((int)MathF.Round((x[i] - m) * id, MidpointRounding.AwayFromZero), lo, hi);
    }

    /// <summary>Element j's low nibble and element j+16's high nibble in byte j (codes offset by <paramref name="bias"/>);
    /// with <paramref name="qh"/> the fifth bits of element j at bit j and of element j+16 at bit j+16.</summary>
    private static void PackNibbles(ReadOnlySpan<int> q, int bias, Span<byte> dst, int qsOffset, Span<byte> qh)
    {
        uint high = 0;
        for (var j = 0; j < 16; j++)
        {
            int a = q[j] + bias, b = q[j + 16] + bias;
            dst[qsOffset + j] = (byte)((a & 0xF) | ((b & 0xF) << 4));
            high |= (uint)((a >> 4) & 1) << j;
            high |= (uint)((b >> 4) & 1) << (j + 16);
        }
        if (!qh.IsEmpty) BinaryPrimitives.WriteUInt32LittleEndian(qh, high);
    }
}
