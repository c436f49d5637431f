using System.Globalization;
using MoECompress.Formats.Errors;

namespace MoECompress.Compression.Pipeline;

/// <summary>An inclusive range of decoder-layer indices, written "3", "0-3" or "4-" (to the last layer).</summary>
public sealed record LayerRange(int First, int? Last)
{
    /// <summary>True when <paramref name="layer"/> is in the range.</summary>
    public bool Contains(int layer) => layer >= First && (Last is not { } l || layer <= l);

    /// <summary>Parses "N", "A-B" or "A-".</summary>
    /// <exception cref="MoeCompressException">Usage, naming <paramref name="option"/>.</exception>
    public static LayerRange Parse(string text, string option = "--layers")
    {
        ArgumentNullException.ThrowIfNull(text);
        var parts = text.Trim().Split('-');
        static int? Number(string s) => int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out var v) ? v : null;
        LayerRange? range = parts.Length switch
        {
            1 when Number(parts[0]) is { } n => new LayerRange(n, n),
            2 when Number(parts[0]) is { } a && parts[1].Length == 0 => new LayerRange(a, null),
            2 when Number(parts[0]) is { } a && Number(parts[1]) is { } b && b >= a => new LayerRange(a, b),
            _ => null,
        };
        return range ?? throw new MoeCompressException(ErrorKind.Usage,
            $"{option} '{text}': give a layer index or an inclusive range such as 0-3 or 4- (first ≤ last, non-negative)");
    }

    /// <inheritdoc />
    public override string ToString() => Last == First ? $"{First}" : $"{First}-{Last?.ToString(CultureInfo.InvariantCulture)}";
}
