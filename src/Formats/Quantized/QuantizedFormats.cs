using MoECompress.Formats.Errors;

namespace MoECompress.Formats.Quantized;

/// <summary>Names of <see cref="QuantizedFormat"/> as users type them (<c>--format gptq</c>).</summary>
public static class QuantizedFormats
{
    /// <summary>All formats with their option spelling.</summary>
    public static IReadOnlyList<(QuantizedFormat Format, string Name)> All { get; } =
    [
        (QuantizedFormat.Gptq, "gptq"),
        (QuantizedFormat.CompressedTensors, "compressed-tensors"),
        (QuantizedFormat.Dequantized, "dequantized"),
    ];

    /// <summary>The option spelling ("gptq", "compressed-tensors", "dequantized").</summary>
    public static string ToName(this QuantizedFormat format)
    {
        foreach (var (f, n) in All)
            if (f == format) return n;
        throw new ArgumentOutOfRangeException(nameof(format), format, "not a quantized format");
    }

    /// <summary>Parses an option value (case-insensitive); throws <see cref="ErrorKind.Usage"/> naming the option.</summary>
    public static QuantizedFormat Parse(string value, string option = "--format")
    {
        foreach (var (f, n) in All)
            if (string.Equals(n, value, StringComparison.OrdinalIgnoreCase)) return f;
        throw new MoeCompressException(ErrorKind.Usage,
            $"{option} '{value}': expected one of {string.Join(", ", All.Select(a => a.Name))}");
    }
}
