using MoECompress.Formats.Errors;
using TorchSharp;

namespace MoECompress.Formats.Safetensors;

/// <summary>
/// Facts about <see cref="SafetensorsDType"/>: item size, header spelling, and the TorchSharp element type a tensor of
/// that dtype becomes in memory.
/// </summary>
/// <remarks>
/// TorchSharp 0.107 has no unsigned 16/32/64-bit and no FP8 element types, so <see cref="ToScalarType"/> widens:
/// U16 → Int32, U32 → Int64, U64 → Int64 (values ≥ 2^63 are rejected when converted), F8_E4M3 / F8_E5M2 → Float32
/// (decoded by <see cref="Float8"/>). Every other dtype maps to the torch type with the same bits.
/// </remarks>
public static class SafetensorsDTypes
{
    /// <summary>All dtypes the format defines, in declaration order.</summary>
    public static IReadOnlyList<SafetensorsDType> All { get; } = Enum.GetValues<SafetensorsDType>();

    /// <summary>Bytes per element.</summary>
    public static int ItemSize(this SafetensorsDType dtype) => dtype switch
    {
        SafetensorsDType.BOOL or SafetensorsDType.U8 or SafetensorsDType.I8
            or SafetensorsDType.F8_E4M3 or SafetensorsDType.F8_E5M2 => 1,
        SafetensorsDType.I16 or SafetensorsDType.U16 or SafetensorsDType.F16 or SafetensorsDType.BF16 => 2,
        SafetensorsDType.I32 or SafetensorsDType.U32 or SafetensorsDType.F32 => 4,
        SafetensorsDType.I64 or SafetensorsDType.U64 or SafetensorsDType.F64 => 8,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "not a safetensors dtype"),
    };

    /// <summary>True for the two 8-bit float formats (no TorchSharp equivalent; decoded by hand).</summary>
    public static bool IsFloat8(this SafetensorsDType dtype) =>
        dtype is SafetensorsDType.F8_E4M3 or SafetensorsDType.F8_E5M2;

    /// <summary>True for floating-point dtypes (F8, F16, BF16, F32, F64).</summary>
    public static bool IsFloatingPoint(this SafetensorsDType dtype) => dtype is SafetensorsDType.F8_E4M3
        or SafetensorsDType.F8_E5M2 or SafetensorsDType.F16 or SafetensorsDType.BF16 or SafetensorsDType.F32
        or SafetensorsDType.F64;

    /// <summary>
    /// The TorchSharp element type <see cref="ITensorSource.ToTensor"/> produces for this dtype when no conversion is
    /// asked for. Same bits where TorchSharp has the type; otherwise the next wider signed type (U16 → Int32,
    /// U32 → Int64, U64 → Int64 with a range check) and Float32 for both FP8 formats.
    /// </summary>
    public static torch.ScalarType ToScalarType(this SafetensorsDType dtype) => dtype switch
    {
        SafetensorsDType.BOOL => torch.ScalarType.Bool,
        SafetensorsDType.U8 => torch.ScalarType.Byte,
        SafetensorsDType.I8 => torch.ScalarType.Int8,
        SafetensorsDType.I16 => torch.ScalarType.Int16,
        SafetensorsDType.U16 => torch.ScalarType.Int32,
        SafetensorsDType.I32 => torch.ScalarType.Int32,
        SafetensorsDType.U32 => torch.ScalarType.Int64,
        SafetensorsDType.I64 => torch.ScalarType.Int64,
        SafetensorsDType.U64 => torch.ScalarType.Int64,
        SafetensorsDType.F16 => torch.ScalarType.Float16,
        SafetensorsDType.BF16 => torch.ScalarType.BFloat16,
        SafetensorsDType.F32 => torch.ScalarType.Float32,
        SafetensorsDType.F64 => torch.ScalarType.Float64,
        SafetensorsDType.F8_E4M3 or SafetensorsDType.F8_E5M2 => torch.ScalarType.Float32,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "not a safetensors dtype"),
    };

    /// <summary>
    /// True when a tensor of this dtype is stored by TorchSharp with exactly the same bytes (so raw bytes can be
    /// copied in and out unchanged).
    /// </summary>
    public static bool HasExactTorchType(this SafetensorsDType dtype) => dtype is not (SafetensorsDType.U16
        or SafetensorsDType.U32 or SafetensorsDType.U64 or SafetensorsDType.F8_E4M3 or SafetensorsDType.F8_E5M2);

    /// <summary>The safetensors dtype whose bytes equal a TorchSharp tensor of <paramref name="type"/>.</summary>
    public static bool TryFromScalarType(torch.ScalarType type, out SafetensorsDType dtype)
    {
        switch (type)
        {
            case torch.ScalarType.Bool: dtype = SafetensorsDType.BOOL; return true;
            case torch.ScalarType.Byte: dtype = SafetensorsDType.U8; return true;
            case torch.ScalarType.Int8: dtype = SafetensorsDType.I8; return true;
            case torch.ScalarType.Int16: dtype = SafetensorsDType.I16; return true;
            case torch.ScalarType.Int32: dtype = SafetensorsDType.I32; return true;
            case torch.ScalarType.Int64: dtype = SafetensorsDType.I64; return true;
            case torch.ScalarType.Float16: dtype = SafetensorsDType.F16; return true;
            case torch.ScalarType.BFloat16: dtype = SafetensorsDType.BF16; return true;
            case torch.ScalarType.Float32: dtype = SafetensorsDType.F32; return true;
            case torch.ScalarType.Float64: dtype = SafetensorsDType.F64; return true;
            default: dtype = default; return false;
        }
    }

    /// <summary>The safetensors dtype whose bytes equal a TorchSharp tensor of <paramref name="type"/>.</summary>
    /// <exception cref="ArgumentException">The torch type has no safetensors equivalent (complex, quantized).</exception>
    public static SafetensorsDType FromScalarType(torch.ScalarType type) =>
        TryFromScalarType(type, out var d) ? d
            : throw new ArgumentException($"torch type {type} has no safetensors dtype", nameof(type));

    /// <summary>The spelling used in safetensors headers ("BF16", "F8_E4M3", ...).</summary>
    public static string ToHeaderName(this SafetensorsDType dtype) => dtype switch
    {
        SafetensorsDType.BOOL => "BOOL", SafetensorsDType.U8 => "U8", SafetensorsDType.I8 => "I8",
        SafetensorsDType.I16 => "I16", SafetensorsDType.U16 => "U16", SafetensorsDType.I32 => "I32",
        SafetensorsDType.U32 => "U32", SafetensorsDType.I64 => "I64", SafetensorsDType.U64 => "U64",
        SafetensorsDType.F16 => "F16", SafetensorsDType.BF16 => "BF16", SafetensorsDType.F32 => "F32",
        SafetensorsDType.F64 => "F64", SafetensorsDType.F8_E4M3 => "F8_E4M3", SafetensorsDType.F8_E5M2 => "F8_E5M2",
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "not a safetensors dtype"),
    };

    /// <summary>
    /// Parses a header dtype name. Exact and case-sensitive, as the format is (unlike <c>Enum.TryParse</c>, numbers and
    /// other casings are rejected).
    /// </summary>
    public static bool TryParse(ReadOnlySpan<char> name, out SafetensorsDType dtype)
    {
        switch (name)
        {
            case "BOOL": dtype = SafetensorsDType.BOOL; return true;
            case "U8": dtype = SafetensorsDType.U8; return true;
            case "I8": dtype = SafetensorsDType.I8; return true;
            case "I16": dtype = SafetensorsDType.I16; return true;
            case "U16": dtype = SafetensorsDType.U16; return true;
            case "I32": dtype = SafetensorsDType.I32; return true;
            case "U32": dtype = SafetensorsDType.U32; return true;
            case "I64": dtype = SafetensorsDType.I64; return true;
            case "U64": dtype = SafetensorsDType.U64; return true;
            case "F16": dtype = SafetensorsDType.F16; return true;
            case "BF16": dtype = SafetensorsDType.BF16; return true;
            case "F32": dtype = SafetensorsDType.F32; return true;
            case "F64": dtype = SafetensorsDType.F64; return true;
            case "F8_E4M3": dtype = SafetensorsDType.F8_E4M3; return true;
            case "F8_E5M2": dtype = SafetensorsDType.F8_E5M2; return true;
            default: dtype = default; return false;
        }
    }

    /// <summary>Parses a dtype name given by a user (option value); throws <see cref="ErrorKind.Usage"/> if unknown.</summary>
    public static SafetensorsDType Parse(string name) => TryParse(name, out var d) ? d
        : throw new MoeCompressException(ErrorKind.Usage,
            $"unknown safetensors dtype '{name}' (expected one of {string.Join(", ", AllHeaderNames)})");

    /// <summary>Comma-separable list of the header names, for messages.</summary>
    internal static IEnumerable<string> AllHeaderNames
    {
        get { foreach (var d in All) yield return d.ToHeaderName(); }
    }

    /// <summary>Byte count of a tensor with this dtype and shape; throws <see cref="OverflowException"/> past long.</summary>
    public static long ByteCount(this SafetensorsDType dtype, ReadOnlySpan<long> shape)
    {
        long n = dtype.ItemSize();
        foreach (var d in shape)
        {
            if (d < 0) throw new ArgumentOutOfRangeException(nameof(shape), d, "negative dimension");
            n = checked(n * d);
        }
        return n;
    }
}
