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

    public MoeCompressException(ErrorKind kind, string message, Exception? inner = null) : base(message, inner) => Kind = kind;
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
