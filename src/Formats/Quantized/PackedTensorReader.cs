using System.Runtime.InteropServices;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Safetensors;

namespace MoECompress.Formats.Quantized;

/// <summary>Reads the small integer and float parts of packed modules from an <see cref="ITensorSource"/> into arrays, with errors that name the tensor.</summary>
internal static class PackedTensorReader
{
    public static TensorInfo Info(ITensorSource src, string name, string file)
    {
        if (!src.Contains(name))
            throw new CheckpointFormatException(file, name, null, "tensor is missing (a packed quantized module needs it)");
        return src.GetInfo(name);
    }

    public static void ExpectShape(TensorInfo info, string file, params long[] shape)
    {
        if (!info.Shape.AsSpan().SequenceEqual(shape))
            throw new CheckpointFormatException(file, info.Name, null,
                $"has shape [{string.Join(", ", info.Shape)}], expected [{string.Join(", ", shape)}]");
    }

    public static void ExpectDType(TensorInfo info, string file, params SafetensorsDType[] allowed)
    {
        if (Array.IndexOf(allowed, info.DType) < 0)
            throw new CheckpointFormatException(file, info.Name, null,
                $"is {info.DType.ToHeaderName()}, expected {string.Join(" or ", allowed.Select(d => d.ToHeaderName()))}");
    }

    /// <summary>An I32 tensor's values.</summary>
    public static int[] Int32(ITensorSource src, string name, string file)
    {
        var info = Info(src, name, file);
        ExpectDType(info, file, SafetensorsDType.I32);
        return MemoryMarshal.Cast<byte, int>(src.GetBytes(name)).ToArray();
    }

    /// <summary>An integer tensor (I8, I16, I32, I64) widened to long.</summary>
    public static long[] Integers(ITensorSource src, string name, string file)
    {
        var info = Info(src, name, file);
        var bytes = src.GetBytes(name);
        return info.DType switch
        {
            SafetensorsDType.I8 => MemoryMarshal.Cast<byte, sbyte>(bytes).ToArray().Select(v => (long)v).ToArray(),
            SafetensorsDType.I16 => MemoryMarshal.Cast<byte, short>(bytes).ToArray().Select(v => (long)v).ToArray(),
            SafetensorsDType.I32 => MemoryMarshal.Cast<byte, int>(bytes).ToArray().Select(v => (long)v).ToArray(),
            SafetensorsDType.I64 => MemoryMarshal.Cast<byte, long>(bytes).ToArray(),
            _ => throw new CheckpointFormatException(file, name, null, $"is {info.DType.ToHeaderName()}, expected an integer dtype"),
        };
    }

    /// <summary>A float tensor (F16, BF16, F32) as float32.</summary>
    public static float[] Floats(ITensorSource src, string name, string file)
    {
        var info = Info(src, name, file);
        var bytes = src.GetBytes(name);
        switch (info.DType)
        {
            case SafetensorsDType.F32:
                return MemoryMarshal.Cast<byte, float>(bytes).ToArray();
            case SafetensorsDType.F16:
            {
                var h = MemoryMarshal.Cast<byte, Half>(bytes);
                var f = new float[h.Length];
                for (int i = 0; i < f.Length; i++) f[i] = (float)h[i];
                return f;
            }
            case SafetensorsDType.BF16:
            {
                var u = MemoryMarshal.Cast<byte, ushort>(bytes);
                var f = new float[u.Length];
                for (int i = 0; i < f.Length; i++) f[i] = BitConverter.Int32BitsToSingle(u[i] << 16);
                return f;
            }
            default:
                throw new CheckpointFormatException(file, name, null, $"is {info.DType.ToHeaderName()}, expected F16, BF16 or F32 scales");
        }
    }

    /// <summary>Transposes a row-major [rows, cols] array.</summary>
    public static T[] Transpose<T>(T[] values, int rows, int cols)
    {
        var t = new T[values.Length];
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++)
                t[(long)c * rows + r] = values[(long)r * cols + c];
        return t;
    }

    /// <summary>Little-endian bytes of float values stored as <paramref name="dtype"/> (F16, BF16 or F32; round to nearest even).</summary>
    public static byte[] FloatBytes(ReadOnlySpan<float> values, SafetensorsDType dtype)
    {
        switch (dtype)
        {
            case SafetensorsDType.F32:
                return MemoryMarshal.AsBytes(values).ToArray();
            case SafetensorsDType.F16:
            {
                var h = new Half[values.Length];
                for (int i = 0; i < h.Length; i++) h[i] = (Half)values[i];
                return MemoryMarshal.AsBytes(h.AsSpan()).ToArray();
            }
            case SafetensorsDType.BF16:
            {
                var u = new ushort[values.Length];
                for (int i = 0; i < u.Length; i++) u[i] = Synthetic.SyntheticValueGenerator.ToBFloat16Bits(values[i]);
                return MemoryMarshal.AsBytes(u.AsSpan()).ToArray();
            }
            default:
                throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "float values are stored as F16, BF16 or F32");
        }
    }

    /// <summary>Float values rounded to what <paramref name="dtype"/> stores (F16, BF16, F32).</summary>
    public static float RoundTo(float value, SafetensorsDType dtype) => dtype switch
    {
        SafetensorsDType.F32 => value,
        SafetensorsDType.F16 => (float)(Half)value,
        SafetensorsDType.BF16 => BitConverter.Int32BitsToSingle(Synthetic.SyntheticValueGenerator.ToBFloat16Bits(value) << 16),
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "float values are stored as F16, BF16 or F32"),
    };

    public static byte[] Bytes(int[] values) => MemoryMarshal.AsBytes(values.AsSpan()).ToArray();
    public static byte[] Bytes(long[] values) => MemoryMarshal.AsBytes(values.AsSpan()).ToArray();
}
