using MoECompress.Formats.Errors;

namespace MoECompress.Formats.Input;

/// <summary>How strictly <see cref="StrictJson"/> reads a file, and which error class (exit code) its failures get.</summary>
public sealed record StrictJsonOptions
{
    /// <summary>The error class of every failure: <see cref="ErrorKind.InvalidConfig"/> for config-like files,
    /// <see cref="ErrorKind.InvalidCheckpoint"/> for index and manifest files.</summary>
    public ErrorKind Kind { get; init; } = ErrorKind.InvalidConfig;

    /// <summary>Deepest nesting of objects and arrays accepted (a config is 3–4 deep; 64 leaves room for tokenizers).</summary>
    public int MaxDepth { get; init; } = 64;

    /// <summary>Largest file accepted, in bytes.</summary>
    public long MaxBytes { get; init; } = 1L << 30;

    /// <summary>Accept a comma before a closing bracket (Hugging Face's JSON5-tolerant loaders accept them).</summary>
    public bool AllowTrailingCommas { get; init; }

    /// <summary>Skip <c>//</c> and <c>/* */</c> comments instead of refusing them.</summary>
    public bool AllowComments { get; init; }

    /// <summary>How messages name the file's role ("config.json", "index"), e.g. "the index is a directory".</summary>
    public string What { get; init; } = "JSON file";
}
