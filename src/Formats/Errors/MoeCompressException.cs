namespace MoECompress.Formats.Errors;

/// <summary>What went wrong, as a class of failure. The numeric value is the process exit code the CLI returns.</summary>
public enum ErrorKind
{
    /// <summary>Unexpected internal failure (a bug).</summary>
    Internal = 1,
    /// <summary>Bad command-line usage or option value.</summary>
    Usage = 2,
    /// <summary>A safetensors file or index is malformed (header, dtype, offsets, shapes, missing shards or tensors).</summary>
    InvalidCheckpoint = 3,
    /// <summary>config.json is missing, malformed, names an unsupported architecture, or disagrees with the tensors.</summary>
    InvalidConfig = 4,
    /// <summary>Tensor values are unusable (NaN/Inf in a router, for example).</summary>
    InvalidValues = 5,
    /// <summary>The request cannot be satisfied for this model (top_k &gt; kept experts, group violations, budget too small).</summary>
    Infeasible = 6,
    /// <summary>Reading or writing files failed (permissions, disk full, destination exists).</summary>
    Io = 7,
}

/// <summary>Base of every error the toolkit reports to users: one line, naming the file/tensor/option and what is wrong.</summary>
public class MoeCompressException : Exception
{
    public ErrorKind Kind { get; }
    public int ExitCode => (int)Kind;

    /// <summary>
    /// <paramref name="message"/> is kept on one line: control characters (a newline in a tensor name or key taken from a
    /// malformed file, for example) are written as escapes (<c>\n</c>, <c>\u001b</c>).
    /// </summary>
    public MoeCompressException(ErrorKind kind, string message, Exception? inner = null) : base(OneLine(message), inner) => Kind = kind;

    /// <summary>The text with every control character escaped, so that it prints as one line.</summary>
    public static string OneLine(string text)
    {
        if (!text.Any(char.IsControl)) return text;
        var sb = new System.Text.StringBuilder(text.Length + 16);
        foreach (char c in text)
        {
            if (!char.IsControl(c)) sb.Append(c);
            else if (c == '\n') sb.Append("\\n");
            else if (c == '\r') sb.Append("\\r");
            else if (c == '\t') sb.Append("\\t");
            else sb.Append("\\u").Append(((int)c).ToString("x4"));
        }
        return sb.ToString();
    }
}

/// <summary>A malformed checkpoint: names the file, and the tensor and byte offset where they apply.</summary>
public sealed class CheckpointFormatException : MoeCompressException
{
    public string FilePath { get; }
    public string? TensorName { get; }
    public long? Offset { get; }

    public CheckpointFormatException(string filePath, string? tensorName, long? offset, string problem,
        ErrorKind kind = ErrorKind.InvalidCheckpoint)
        : base(kind, Format(filePath, tensorName, offset, problem))
    {
        FilePath = filePath;
        TensorName = tensorName;
        Offset = offset;
    }

    private static string Format(string file, string? tensor, long? offset, string problem)
    {
        var where = file;
        if (tensor is not null) where += $": tensor '{tensor}'";
        if (offset is not null) where += $" at byte offset {offset}";
        return $"{where}: {problem}";
    }
}
