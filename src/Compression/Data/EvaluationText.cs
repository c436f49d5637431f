using MoECompress.Compression.Tokenization;
using MoECompress.Formats.Errors;

namespace MoECompress.Compression.Data;

/// <summary>
/// Loads held-out text as one token stream for perplexity, the way the usual WikiText-2 evaluation does: the file is
/// tokenized as a whole (BOS first when the tokenizer has one and <paramref name="addBos"/> is set), with EOS between
/// documents when the input has several (.jsonl lines, several files). Accepts the same inputs as <see cref="CalibrationData"/>.
/// </summary>
public static class EvaluationText
{
    /// <summary>Tokenizes <paramref name="fileOrFolder"/> into one stream.</summary>
    /// <param name="fileOrFolder">A .txt or .jsonl file, or a folder of them.</param>
    /// <param name="tokenizer">The model's tokenizer.</param>
    /// <param name="addBos">Start the stream with BOS (when the tokenizer has one).</param>
    /// <param name="textSplit">How .txt files are divided into documents (the whole file by default).</param>
    /// <param name="progress">Receives one line per file.</param>
    /// <param name="cancellationToken">Cancels between files and documents.</param>
    /// <exception cref="MoeCompressException">Missing, empty or malformed input (ErrorKind.Usage).</exception>
    public static EvaluationTokens Load(string fileOrFolder, ITextTokenizer tokenizer, bool addBos = true,
        TextDocumentSplit textSplit = TextDocumentSplit.WholeFile, IProgress<string>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(fileOrFolder);
        ArgumentNullException.ThrowIfNull(tokenizer);
        var stream = TokenStreamBuilder.Build(fileOrFolder, tokenizer, textSplit, progress, cancellationToken);
        bool bos = addBos && tokenizer.BosId is not null;
        if (stream.Tokens.Length == 0)
            throw new MoeCompressException(ErrorKind.Usage, $"{Path.GetFullPath(fileOrFolder)}: no tokens after tokenization");
        var tokens = stream.Tokens;
        if (bos)
        {
            tokens = new int[stream.Tokens.Length + 1];
            tokens[0] = tokenizer.BosId!.Value;
            stream.Tokens.CopyTo(tokens, 1);
        }
        return new EvaluationTokens
        {
            Tokens = tokens,
            Files = stream.Files,
            Documents = stream.Documents,
            SeparatorId = stream.SeparatorId,
            BosPrepended = bos,
            TokenizerName = tokenizer.Name,
        };
    }
}
