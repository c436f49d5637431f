using System.Runtime.InteropServices;
using System.Text;
using MoECompress.Formats.Safetensors;

namespace MoECompress.Formats.Synthetic;

/// <summary>
/// Fills tensor bytes with seeded pseudo-random values, fast: a SplitMix64 stream picks entries of a precomputed
/// table of 4096 normal quantiles (already converted to the target dtype's bits), so a value costs a table lookup.
/// Each 1M-element chunk has its own stream derived from (seed, tensor name, chunk index), so large tensors fill in
/// parallel and the bytes never depend on thread count, sharding or write order.
/// </summary>
public static class SyntheticValueGenerator
{
    private const int TableBits = 12;
    private const int TableSize = 1 << TableBits;
    private const int ChunkElements = 1 << 20;
    /// <summary>Standard deviation of weights and biases.</summary>
    public const double Std = 0.02;

    private static readonly float[] NormalQuantiles = BuildQuantiles();
    private static readonly Dictionary<(SafetensorsDType, SyntheticInit), Array> Tables = new();

    /// <summary>Fills <paramref name="destination"/> (exactly the tensor's byte count) with the tensor's values.</summary>
    public static void Fill(SyntheticTensor tensor, int seed, Span<byte> destination)
    {
        if (destination.Length != tensor.ByteCount)
            throw new ArgumentException($"buffer holds {destination.Length} bytes, tensor '{tensor.Name}' needs {tensor.ByteCount}");
        ulong tensorSeed = Hash(tensor.Name) ^ ((ulong)(uint)seed * 0x9E3779B97F4A7C15UL);
        int itemSize = tensor.DType.ItemSize();
        long elements = tensor.ElementCount;
        long chunks = (elements + ChunkElements - 1) / ChunkElements;
        if (chunks <= 1)
        {
            FillChunk(tensor, tensorSeed, 0, destination);
            return;
        }
        unsafe
        {
            fixed (byte* p = destination)
            {
                nint basePtr = (nint)p;
                int length = destination.Length;
                Parallel.For(0L, chunks, c =>
                {
                    long start = c * ChunkElements * itemSize;
                    int count = (int)Math.Min((long)ChunkElements * itemSize, length - start);
                    FillChunk(tensor, tensorSeed, c, new Span<byte>((byte*)(basePtr + (nint)start), count));
                });
            }
        }
    }

    private static void FillChunk(SyntheticTensor tensor, ulong tensorSeed, long chunk, Span<byte> bytes)
    {
        ulong state = tensorSeed + (ulong)chunk * 0xD1B54A32D192ED03UL;
        switch (tensor.Init)
        {
            case SyntheticInit.RandomBytes:
            {
                int i = 0;
                for (; i + 8 <= bytes.Length; i += 8)
                {
                    ulong r = Next(ref state);
                    MemoryMarshal.Write(bytes[i..], in r);
                }
                ulong last = Next(ref state);
                for (; i < bytes.Length; i++, last >>= 8) bytes[i] = (byte)last;
                return;
            }
            case SyntheticInit.Mxfp4Scales:
            {
                for (int i = 0; i < bytes.Length; i++) bytes[i] = (byte)(119 + (Next(ref state) >> 62));
                return;
            }
        }
        switch (tensor.DType.ItemSize())
        {
            case 1 when tensor.Init == SyntheticInit.Fp8Codes && tensor.DType == SafetensorsDType.F8_E4M3:
                FillFromTable(bytes, (byte[])Table(tensor.DType, tensor.Init), ref state);
                return;
            case 2:
                FillFromTable(MemoryMarshal.Cast<byte, ushort>(bytes), (ushort[])Table(tensor.DType, tensor.Init), ref state);
                return;
            case 4:
                FillFromTable(MemoryMarshal.Cast<byte, uint>(bytes), (uint[])Table(tensor.DType, tensor.Init), ref state);
                return;
            default:
                throw new NotSupportedException($"synthetic values for dtype {tensor.DType} with init {tensor.Init}");
        }
    }

    private static void FillFromTable<T>(Span<T> values, T[] table, ref ulong state)
    {
        int i = 0;
        const int mask = TableSize - 1;
        for (; i + 4 <= values.Length; i += 4)
        {
            ulong r = Next(ref state);
            values[i] = table[(int)r & mask];
            values[i + 1] = table[(int)(r >> 16) & mask];
            values[i + 2] = table[(int)(r >> 32) & mask];
            values[i + 3] = table[(int)(r >> 48) & mask];
        }
        for (; i < values.Length; i++) values[i] = table[(int)Next(ref state) & mask];
    }

    private static Array Table(SafetensorsDType dtype, SyntheticInit init)
    {
        lock (Tables)
        {
            if (Tables.TryGetValue((dtype, init), out var t)) return t;
            var floats = init switch
            {
                SyntheticInit.NormScale => NormalQuantiles.Select(z => (float)(1.0 + Std * z)).ToArray(),
                SyntheticInit.Fp8Codes => NormalQuantiles,
                SyntheticInit.Fp8BlockScale => NormalQuantiles.Select(z => (float)(Std * (1.0 + Std * z))).ToArray(),
                _ => NormalQuantiles.Select(z => (float)(Std * z)).ToArray(),
            };
            t = dtype switch
            {
                SafetensorsDType.F8_E4M3 => floats.Select(NearestE4M3).ToArray(),
                SafetensorsDType.BF16 => floats.Select(ToBFloat16Bits).ToArray(),
                SafetensorsDType.F16 => floats.Select(f => BitConverter.HalfToUInt16Bits((Half)f)).ToArray(),
                SafetensorsDType.F32 => floats.Select(BitConverter.SingleToUInt32Bits).ToArray(),
                _ => throw new NotSupportedException($"synthetic float values in dtype {dtype}"),
            };
            Tables[(dtype, init)] = t;
            return t;
        }
    }

    /// <summary>The F8_E4M3 code whose value is nearest to <paramref name="f"/> (NaN codes excluded).</summary>
    private static byte NearestE4M3(float f)
    {
        int best = 0;
        for (int code = 1; code < 256; code++)
        {
            float v = Float8.DecodeE4M3((byte)code);
            if (float.IsFinite(v) && Math.Abs(v - f) < Math.Abs(Float8.DecodeE4M3((byte)best) - f)) best = code;
        }
        return (byte)best;
    }

    /// <summary>Round-to-nearest-even float32 → bfloat16 bits.</summary>
    public static ushort ToBFloat16Bits(float f)
    {
        uint bits = BitConverter.SingleToUInt32Bits(f);
        uint rounding = 0x7FFF + ((bits >> 16) & 1);
        return (ushort)((bits + rounding) >> 16);
    }

    private static ulong Next(ref ulong state)
    {
        ulong z = state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    private static ulong Hash(string name)
    {
        ulong h = 14695981039346656037UL;
        foreach (byte b in Encoding.UTF8.GetBytes(name)) h = (h ^ b) * 1099511628211UL;
        return h;
    }

    /// <summary>Quantiles of N(0,1) at (i + 0.5) / 4096 (Acklam's rational approximation, |error| &lt; 1.2e-9).</summary>
    private static float[] BuildQuantiles()
    {
        var q = new float[TableSize];
        for (int i = 0; i < TableSize; i++) q[i] = (float)InverseNormal((i + 0.5) / TableSize);
        return q;
    }

    private static double InverseNormal(double p)
    {
        double[] a = [-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02, 1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00];
        double[] b = [-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02, 6.680131188771972e+01, -1.328068155288572e+01];
        double[] c = [-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00, -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00];
        double[] d = [7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00, 3.754408661907416e+00];
        const double low = 0.02425, high = 1 - low;
        if (p < low)
        {
            double q = Math.Sqrt(-2 * Math.Log(p));
            return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
        }
        if (p > high)
        {
            double q = Math.Sqrt(-2 * Math.Log(1 - p));
            return -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
        }
        double r = p - 0.5, s = r * r;
        return (((((a[0] * s + a[1]) * s + a[2]) * s + a[3]) * s + a[4]) * s + a[5]) * r / (((((b[0] * s + b[1]) * s + b[2]) * s + b[3]) * s + b[4]) * s + 1);
    }
}
