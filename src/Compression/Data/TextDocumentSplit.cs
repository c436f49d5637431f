namespace MoECompress.Compression.Data;

/// <summary>
/// How a plain-text (.txt) file is divided into documents. Document boundaries only decide where a separator token
/// (EOS) goes in the token stream; the text itself is always tokenized exactly as it is in the file.
/// </summary>
public enum TextDocumentSplit
{
    /// <summary>The whole file is one document (the default). Right for files whose documents span several lines and
    /// contain blank lines, such as the OLMoE domain samples (LaTeX papers, source files, Wikipedia articles) and
    /// WikiText, where any line-based split would cut documents apart.</summary>
    WholeFile,

    /// <summary>Documents are separated by one or more blank lines (lines holding only whitespace).</summary>
    BlankLines,

    /// <summary>Each non-empty line is one document (one-document-per-line files such as C4 dumps).</summary>
    Lines,
}
