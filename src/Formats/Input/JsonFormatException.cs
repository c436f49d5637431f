using MoECompress.Formats.Errors;

namespace MoECompress.Formats.Input;

/// <summary>
/// Malformed JSON text, found by <see cref="StrictJson"/>: names the file, the JSON path of the value (<c>$</c> is
/// the root, <c>$.weight_map['a.b']</c> a key, <c>$.layers[3]</c> an array item), the byte offset and the problem.
/// </summary>
public sealed class JsonFormatException : MoeCompressException
{
    /// <summary>The file (or a description of the text's origin).</summary>
    public string FilePath { get; }

    /// <summary>Where in the document the problem is (<c>$</c> for the root).</summary>
    public string JsonPath { get; }

    /// <summary>Byte offset of the problem inside the text.</summary>
    public long Offset { get; }

    /// <summary>The problem alone, without file, path and offset.</summary>
    public string Problem { get; }

    public JsonFormatException(ErrorKind kind, string filePath, string jsonPath, long offset, string problem)
        : base(kind, $"{filePath}: invalid JSON at {jsonPath}, byte {offset}: {problem}")
    {
        FilePath = filePath;
        JsonPath = jsonPath;
        Offset = offset;
        Problem = problem;
    }
}
