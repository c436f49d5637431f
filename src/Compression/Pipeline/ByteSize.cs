using System.Globalization;
using MoECompress.Formats.Errors;

namespace MoECompress.Compression.Pipeline;

/// <summary>Parses and prints byte sizes: "5GB", "500MB", "2GiB", "1.5G", "123456".</summary>
public static class ByteSize
{
    /// <summary>Bytes of <paramref name="text"/>; a usage error naming <paramref name="option"/> when it is not a size.</summary>
    public static long Parse(string text, string option)
    {
        var s = text.Trim();
        int i = 0;
        while (i < s.Length && (char.IsDigit(s[i]) || s[i] == '.')) i++;
        if (i == 0 || !double.TryParse(s[..i], NumberStyles.Float, CultureInfo.InvariantCulture, out var value) || value <= 0)
            throw new MoeCompressException(ErrorKind.Usage, $"{option}: '{text}' is not a size (examples: 5GB, 500MB, 2GiB, 1048576)");
        double unit = s[i..].Trim().ToUpperInvariant() switch
        {
            "" or "B" => 1,
            "K" or "KB" => 1e3, "KIB" => 1024,
            "M" or "MB" => 1e6, "MIB" => 1024 * 1024,
            "G" or "GB" => 1e9, "GIB" => 1024d * 1024 * 1024,
            "T" or "TB" => 1e12, "TIB" => 1024d * 1024 * 1024 * 1024,
            _ => throw new MoeCompressException(ErrorKind.Usage, $"{option}: unknown unit in '{text}' (use B, KB, MB, GB, TB or KiB, MiB, GiB, TiB)"),
        };
        return (long)Math.Round(value * unit);
    }

    /// <summary>A short binary-unit rendering ("1.50 GiB").</summary>
    public static string Format(long bytes) => bytes switch
    {
        >= 1L << 30 => $"{bytes / (double)(1L << 30):0.00} GiB",
        >= 1L << 20 => $"{bytes / (double)(1L << 20):0.0} MiB",
        >= 1L << 10 => $"{bytes / 1024.0:0.0} KiB",
        _ => $"{bytes} B",
    };
}
