using Microsoft.ML.Tokenizers;
using MoECompress.Formats.Errors;

namespace MoECompress.Compression.Tokenization;

/// <summary>
/// A SentencePiece model that <see cref="SentencePieceBpeTokenizer"/> does not encode itself (Unigram models, or models
/// with a precompiled normalization map), run by Microsoft.ML.Tokenizers' SentencePieceTokenizer.
/// </summary>
/// <remarks>
/// Not checked against sentencepiece-produced ids in this project's tests (no such model is among the test data);
/// Microsoft.ML.Tokenizers 2.0.1 is known to break BPE merge ties differently from sentencepiece, which is why BPE
/// models do not come here. Thread-safe (Microsoft.ML.Tokenizers tokenizers are meant to be shared).
/// </remarks>
public sealed class SentencePieceLibraryTokenizer : ITextTokenizer
{
    private readonly SentencePieceTokenizer _inner;
    private readonly int[] _prefix;
    private readonly int[] _suffix;

    /// <inheritdoc/>
    public string Name { get; }
    /// <inheritdoc/>
    public int VocabSize { get; }
    /// <inheritdoc/>
    public int? BosId { get; }
    /// <inheritdoc/>
    public int? EosId { get; }
    /// <inheritdoc/>
    public IReadOnlyList<int> SpecialPrefix => _prefix;
    /// <inheritdoc/>
    public IReadOnlyList<int> SpecialSuffix => _suffix;
    /// <summary>The model file this tokenizer was loaded from.</summary>
    public string FilePath { get; }

    private SentencePieceLibraryTokenizer(SentencePieceTokenizer inner, string path, int vocabSize, int? bos, int? eos, int[] prefix, int[] suffix)
    {
        _inner = inner;
        FilePath = path;
        VocabSize = vocabSize;
        BosId = bos;
        EosId = eos;
        _prefix = prefix;
        _suffix = suffix;
        Name = $"sentencepiece (Microsoft.ML.Tokenizers) ({path})";
    }

    /// <summary>Loads any SentencePiece model Microsoft.ML.Tokenizers supports (BPE or Unigram).</summary>
    /// <exception cref="MoeCompressException">The file cannot be read as a SentencePiece model (ErrorKind.InvalidConfig).</exception>
    public static SentencePieceLibraryTokenizer Load(string modelPath, TokenizerConfigFile? config = null, TokenizerOptions? options = null)
    {
        var path = Path.GetFullPath(modelPath);
        var model = SentencePieceModelFile.Read(path);
        config ??= TokenizerConfigFile.Read(Path.GetDirectoryName(path)!);
        options ??= TokenizerOptions.Default;
        SentencePieceTokenizer inner;
        try
        {
            using var stream = File.OpenRead(path);
            inner = SentencePieceTokenizer.Create(stream, false, false);
        }
        catch (Exception e) when (e is ArgumentException or NotSupportedException or InvalidOperationException or IOException)
        {
            throw new MoeCompressException(ErrorKind.InvalidConfig, $"{path}: Microsoft.ML.Tokenizers cannot load this SentencePiece model ({e.Message})", e);
        }
        var (bos, eos) = SentencePieceBpeTokenizer.ResolveBosEos(model, config);
        var (prefix, suffix) = SpecialTokenFraming.Resolve(bos, eos, bos is null ? [] : [bos.Value], [], config, options, path);
        return new SentencePieceLibraryTokenizer(inner, path, model.Pieces.Count, bos, eos, prefix, suffix);
    }

    /// <inheritdoc/>
    public int[] Encode(string text, bool addSpecialTokens)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = _inner.EncodeToIds(SpecialTokenFraming.ReplaceLoneSurrogates(text), addBeginningOfSentence: false, addEndOfSentence: false);
        var body = ids.ToArray();
        return addSpecialTokens ? SpecialTokenFraming.Frame(_prefix, body, _suffix) : body;
    }

    /// <inheritdoc/>
    public string Decode(IReadOnlyList<int> ids)
    {
        ArgumentNullException.ThrowIfNull(ids);
        return _inner.Decode(ids.Where(id => id >= 0 && id < VocabSize), considerSpecialTokens: false);
    }

    /// <summary>Nothing to release; present for <see cref="ITextTokenizer"/>.</summary>
    public void Dispose() { }

    /// <inheritdoc/>
    public override string ToString() => Name;
}
