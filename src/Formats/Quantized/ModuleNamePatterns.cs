using System.Text;
using System.Text.RegularExpressions;

namespace MoECompress.Formats.Quantized;

/// <summary>
/// Module-name regular expressions as the Python loaders use them (<c>re.match</c>: anchored at the start only), and
/// exact-name patterns that both Python and .NET read the same way.
/// </summary>
internal static class ModuleNamePatterns
{
    /// <summary>Compiles a Python <c>re</c> pattern for <c>re.match</c> semantics (named groups <c>(?P&lt;n&gt;…)</c> accepted).</summary>
    public static Regex FromPython(string pattern) =>
        new(@"\A(?:" + pattern.Replace("(?P<", "(?<", StringComparison.Ordinal) + ")", RegexOptions.CultureInvariant);

    /// <summary>A pattern matching exactly the given names: <c>^(?:a|b|…)$</c>, every non-word character escaped.</summary>
    public static string ExactNames(IEnumerable<string> names)
    {
        var sb = new StringBuilder("^(?:");
        bool first = true;
        foreach (var name in names)
        {
            if (!first) sb.Append('|');
            first = false;
            foreach (var ch in name)
            {
                if (!(char.IsAsciiLetterOrDigit(ch) || ch == '_')) sb.Append('\\');
                sb.Append(ch);
            }
        }
        return sb.Append(")$").ToString();
    }
}
