using System.Globalization;

namespace MoECompress.Formats.Gguf;

/// <summary>
/// One typed GGUF metadata value. Scalars hold their .NET value (uint for UINT32, float for FLOAT32, ...); arrays hold a
/// .NET array of the element type (<see cref="ElementType"/>), strings included.
/// </summary>
public sealed record GgufValue(GgufValueType Type, object Value, GgufValueType? ElementType = null)
{
    public static GgufValue U32(uint v) => new(GgufValueType.UInt32, v);
    public static GgufValue I32(int v) => new(GgufValueType.Int32, v);
    public static GgufValue U64(ulong v) => new(GgufValueType.UInt64, v);
    public static GgufValue F32(float v) => new(GgufValueType.Float32, v);
    public static GgufValue Bool(bool v) => new(GgufValueType.Bool, v);
    public static GgufValue Str(string v) => new(GgufValueType.String, v);
    public static GgufValue Strings(string[] v) => new(GgufValueType.Array, v, GgufValueType.String);
    public static GgufValue F32s(float[] v) => new(GgufValueType.Array, v, GgufValueType.Float32);
    public static GgufValue I32s(int[] v) => new(GgufValueType.Array, v, GgufValueType.Int32);

    /// <summary>Number of elements of an array value (1 for scalars).</summary>
    public int Count => Value is Array a ? a.Length : 1;

    /// <summary>The value as an unsigned integer (any integer type); throws for other types.</summary>
    public ulong AsUInt64() => Value switch
    {
        byte b => b, sbyte sb when sb >= 0 => (ulong)sb, ushort us => us, short s when s >= 0 => (ulong)s,
        uint u => u, int i when i >= 0 => (ulong)i, ulong ul => ul, long l when l >= 0 => (ulong)l,
        _ => throw new InvalidCastException($"a {Type} value is not a non-negative integer"),
    };

    /// <summary>The value as a double (integers and floats).</summary>
    public double AsDouble() => Value switch
    {
        float f => f, double d => d, bool => throw new InvalidCastException("a BOOL value is not a number"),
        _ => Convert.ToDouble(Value, CultureInfo.InvariantCulture),
    };

    /// <summary>Equality by type and contents (arrays element-wise).</summary>
    public bool SameAs(GgufValue other) =>
        Type == other.Type && ElementType == other.ElementType &&
        (Value is Array a && other.Value is Array b
            ? a.Length == b.Length && Enumerable.Range(0, a.Length).All(i => Equals(a.GetValue(i), b.GetValue(i)))
            : Equals(Value, other.Value));

    public override string ToString() => Value is Array a
        ? $"[{ElementType}; {a.Length}]"
        : Convert.ToString(Value, CultureInfo.InvariantCulture) ?? "";
}
