using MoECompress.Formats.Errors;
using MoECompress.Formats.Safetensors;
using TorchSharp;

namespace MoECompress.Compression.Surgery;

/// <summary>
/// Raw-byte helpers of <see cref="ExpertSurgery"/>: ranges of a stored tensor (without mapping all of it), the
/// TorchSharp type whose bytes equal a safetensors dtype, and float32 conversion of plain floating-point data.
/// </summary>
internal static class SurgeryTensorBytes
{
    /// <summary>True for the dtypes merged experts and weighted router rows can be computed in (F16, BF16, F32, F64).</summary>
    public static bool IsPlainFloat(SafetensorsDType dtype) =>
        dtype is SafetensorsDType.F16 or SafetensorsDType.BF16 or SafetensorsDType.F32 or SafetensorsDType.F64;

    /// <summary><paramref name="length"/> bytes of tensor <paramref name="name"/> from byte <paramref name="start"/> (zero-copy).</summary>
    public static ReadOnlySpan<byte> Range(ITensorSource source, string name, long start, long length)
    {
        int n = checked((int)length);
        return source switch
        {
            SafetensorsCheckpoint c => c.GetFile(name).GetBytes(name, start, n),
            SafetensorsFile f => f.GetBytes(name, start, n),
            _ => source.GetBytes(name).Slice(checked((int)start), n),
        };
    }

    /// <summary>Tells a memory-mapped source that this process is done with a tensor's pages (no-op for other sources).</summary>
    public static void Release(ITensorSource source, string name)
    {
        switch (source)
        {
            case SafetensorsCheckpoint c: c.GetFile(name).ReleaseMappedPages(name); break;
            case SafetensorsFile f: f.ReleaseMappedPages(name); break;
        }
    }

    /// <summary>The TorchSharp element type with exactly the bytes of <paramref name="dtype"/> (F8 as Byte, U16/U32/U64 as Int16/32/64).</summary>
    public static torch.ScalarType StorageType(SafetensorsDType dtype) => dtype switch
    {
        SafetensorsDType.F8_E4M3 or SafetensorsDType.F8_E5M2 => torch.ScalarType.Byte,
        SafetensorsDType.U16 => torch.ScalarType.Int16,
        SafetensorsDType.U32 => torch.ScalarType.Int32,
        SafetensorsDType.U64 => torch.ScalarType.Int64,
        _ => dtype.ToScalarType(),
    };

    /// <summary>A new float32 tensor of <paramref name="shape"/> from plain floating-point bytes.</summary>
    public static torch.Tensor ToFloat32(ReadOnlySpan<byte> bytes, SafetensorsDType dtype, long[] shape, string name)
    {
        if (!IsPlainFloat(dtype))
            throw new MoeCompressException(ErrorKind.Infeasible,
                $"tensor '{name}' is {dtype.ToHeaderName()} (quantized or not floating-point) and cannot be combined; dequantize first");
        using var scope = torch.NewDisposeScope();
        var t = torch.empty(shape, dtype.ToScalarType());
        bytes.CopyTo(t.bytes);
        return t.to(torch.ScalarType.Float32).contiguous().MoveToOuterDisposeScope();
    }

    /// <summary>Copies a float32 tensor's values, converted to <paramref name="dtype"/>, into <paramref name="destination"/>.</summary>
    public static void CopyAs(torch.Tensor values, SafetensorsDType dtype, Span<byte> destination, string name)
    {
        if (!IsPlainFloat(dtype))
            throw new MoeCompressException(ErrorKind.Infeasible,
                $"tensor '{name}' is {dtype.ToHeaderName()} (quantized or not floating-point) and cannot be written from computed values; dequantize first");
        using var converted = values.to(dtype.ToScalarType()).contiguous();
        var bytes = converted.bytes;
        if (bytes.Length != destination.Length)
            throw new InvalidOperationException($"tensor '{name}': {bytes.Length} computed bytes for a {destination.Length}-byte slot");
        bytes.CopyTo(destination);
    }
}
