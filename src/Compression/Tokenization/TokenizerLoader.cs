using MoECompress.Formats.Errors;

namespace MoECompress.Compression.Tokenization;

/// <summary>
/// Finds and loads a model folder's tokenizer, in the order transformers prefers: <c>tokenizer.json</c>
/// (Hugging Face, run by Hugging Face's tokenizers library), then <c>tokenizer.model</c> (SentencePiece).
/// tokenizer_config.json and special_tokens_map.json supply add_bos_token / add_eos_token and the BOS/EOS tokens.
/// </summary>
public static class TokenizerLoader
{
    /// <summary>The files looked for, in order of preference.</summary>
    public static IReadOnlyList<string> CandidateFiles { get; } = ["tokenizer.json", "tokenizer.model"];

    /// <summary>Loads the tokenizer of <paramref name="modelDir"/>. Dispose the result when done.</summary>
    /// <exception cref="MoeCompressException">The folder is missing or holds no tokenizer file, or a file is malformed (ErrorKind.InvalidConfig).</exception>
    public static ITextTokenizer Load(string modelDir, TokenizerOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(modelDir);
        var dir = Path.GetFullPath(modelDir);
        if (!Directory.Exists(dir))
            throw new MoeCompressException(ErrorKind.InvalidConfig, $"{dir}: model folder not found (looked for a tokenizer in it)");
        options ??= TokenizerOptions.Default;

        var json = Path.Combine(dir, "tokenizer.json");
        if (File.Exists(json))
            return HuggingFaceTokenizer.Load(json, TokenizerConfigFile.Read(dir), options);

        var sp = Path.Combine(dir, "tokenizer.model");
        if (File.Exists(sp))
        {
            var config = TokenizerConfigFile.Read(dir);
            var model = SentencePieceModelFile.Read(sp);
            return SentencePieceBpeTokenizer.IsSupported(model)
                ? SentencePieceBpeTokenizer.Load(sp, config, options)
                : SentencePieceLibraryTokenizer.Load(sp, config, options);
        }

        throw new MoeCompressException(ErrorKind.InvalidConfig,
            $"{dir}: no tokenizer found (looked for {string.Join(", ", CandidateFiles)})");
    }
}
