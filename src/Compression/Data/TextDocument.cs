namespace MoECompress.Compression.Data;

/// <summary>One document of calibration or evaluation input: either text to tokenize or ids given pre-tokenized.</summary>
/// <param name="File">The file it came from.</param>
/// <param name="Line">1-based line where it starts (the .jsonl line, or the first line of a .txt document).</param>
/// <param name="Text">Text to tokenize, or null for a pre-tokenized document.</param>
/// <param name="Ids">Pre-tokenized ids ("input_ids"), used as they are, or null for a text document.</param>
public sealed record TextDocument(string File, int Line, string? Text, int[]? Ids);
