using MoECompress.Formats.Errors;

namespace MoECompress.Formats.Gguf;

/// <summary>
/// Facts about <see cref="GgmlType"/>: elements per block and bytes per block (ggml-common.h), names as llama.cpp
/// prints them, and the fallback llama-quantize uses when a row is not a whole number of blocks.
/// </summary>
public static class GgmlTypes
{
    /// <summary>Elements per K-quant super-block (ggml's QK_K).</summary>
    public const int SuperBlock = 256;

    /// <summary>Every supported type.</summary>
    public static IReadOnlyList<GgmlType> All { get; } = Enum.GetValues<GgmlType>();

    /// <summary>Elements per block (1 for float types).</summary>
    public static int BlockSize(this GgmlType type) => type switch
    {
        GgmlType.F32 or GgmlType.F16 or GgmlType.BF16 => 1,
        GgmlType.Q4_0 or GgmlType.Q4_1 or GgmlType.Q5_0 or GgmlType.Q5_1 or GgmlType.Q8_0 => 32,
        _ => SuperBlock,
    };

    /// <summary>Bytes per block: Q8_0 34, Q4_0 18, Q4_1 20, Q5_0 22, Q5_1 24, Q2_K 84, Q3_K 110, Q4_K 144, Q5_K 176, Q6_K 210.</summary>
    public static int BlockBytes(this GgmlType type) => type switch
    {
        GgmlType.F32 => 4,
        GgmlType.F16 or GgmlType.BF16 => 2,
        GgmlType.Q4_0 => 18,
        GgmlType.Q4_1 => 20,
        GgmlType.Q5_0 => 22,
        GgmlType.Q5_1 => 24,
        GgmlType.Q8_0 => 34,
        GgmlType.Q2_K => 84,
        GgmlType.Q3_K => 110,
        GgmlType.Q4_K => 144,
        GgmlType.Q5_K => 176,
        GgmlType.Q6_K => 210,
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "not a supported ggml type"),
    };

    /// <summary>True for the K-quants (256-element super-blocks).</summary>
    public static bool IsKQuant(this GgmlType type) => type is GgmlType.Q2_K or GgmlType.Q3_K or GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q6_K;

    /// <summary>True for the float types (no blocks, no scales).</summary>
    public static bool IsFloat(this GgmlType type) => type is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16;

    /// <summary>Stored bits per weight (scales included): Q4_K 4.5, Q8_0 8.5, F16 16.</summary>
    public static double BitsPerWeight(this GgmlType type) => type.BlockBytes() * 8.0 / type.BlockSize();

    /// <summary>Bytes of a row of <paramref name="elements"/> elements (a whole number of blocks).</summary>
    public static long RowBytes(this GgmlType type, long elements)
    {
        if (elements % type.BlockSize() != 0)
            throw new ArgumentException($"a row of {elements} elements is not a whole number of {type} blocks ({type.BlockSize()})", nameof(elements));
        return elements / type.BlockSize() * type.BlockBytes();
    }

    /// <summary>Name as llama.cpp prints and accepts it ("Q4_K", "BF16").</summary>
    public static string ToName(this GgmlType type) => type.ToString();

    /// <summary>Parses a type name (case-insensitive: "q4_k", "Q8_0", "bf16"); throws Usage naming <paramref name="option"/>.</summary>
    public static GgmlType Parse(string value, string option)
    {
        foreach (var t in All)
            if (string.Equals(t.ToName(), value.Trim(), StringComparison.OrdinalIgnoreCase)) return t;
        throw new MoeCompressException(ErrorKind.Usage,
            $"{option} '{value}': not a ggml type this toolkit writes; expected one of {string.Join(", ", All.Select(t => t.ToName()))}");
    }

    /// <summary>True when a tensor whose rows hold <paramref name="rowElements"/> elements can be stored as <paramref name="type"/>.</summary>
    public static bool Fits(this GgmlType type, long rowElements) => rowElements % type.BlockSize() == 0;

    /// <summary>
    /// The type llama-quantize writes instead of <paramref name="type"/> for rows that are not a whole number of its
    /// blocks: Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0, and, where llama.cpp now uses IQ4_NL (a codebook type not written
    /// here), Q2_K / Q3_K → Q4_0 as older llama.cpp did; F16 when even 32-element blocks do not fit. Returns
    /// <paramref name="type"/> itself when it fits.
    /// </summary>
    public static GgmlType FallbackFor(this GgmlType type, long rowElements)
    {
        if (type.Fits(rowElements)) return type;
        var next = type switch
        {
            GgmlType.Q4_K => GgmlType.Q5_0,
            GgmlType.Q5_K => GgmlType.Q5_1,
            GgmlType.Q6_K => GgmlType.Q8_0,
            GgmlType.Q2_K or GgmlType.Q3_K => GgmlType.Q4_0,
            _ => GgmlType.F16,
        };
        return next.Fits(rowElements) ? next : GgmlType.F16;
    }
}
