using Microsoft.ML.Tokenizers;

namespace MoECompress.Compression.Training;

/// <summary>
/// Encodes text with a SentencePiece tokenizer.model (BPE with byte fallback, e.g. the Mistral 32k vocabulary) via
/// Microsoft.ML.Tokenizers' LlamaTokenizer; ids without BOS/EOS, which the caller adds.
/// </summary>
public sealed class SentencePieceEncoder
{
    private readonly LlamaTokenizer tokenizer;

    public SentencePieceEncoder(string tokenizerModelPath)
    {
        try
        {
            using var stream = File.OpenRead(tokenizerModelPath);
            tokenizer = LlamaTokenizer.Create(stream, addBeginOfSentence: false, addEndOfSentence: false);
        }
        catch (Exception ex) when (ex is not MoECompress.Formats.Errors.MoeCompressException)
        {
            throw new MoECompress.Formats.Errors.MoeCompressException(MoECompress.Formats.Errors.ErrorKind.Usage,
                $"tokenizer model '{tokenizerModelPath}' could not be read as SentencePiece: {ex.Message}", ex);
        }
        BosId = tokenizer.BeginningOfSentenceId;
        EosId = tokenizer.EndOfSentenceId;
        VocabularySize = tokenizer.Vocabulary.Count;
    }

    public int BosId { get; }
    public int EosId { get; }
    public int VocabularySize { get; }

    public int[] Encode(string text) => tokenizer.EncodeToIds(text).ToArray();

    /// <summary>
    /// Cuts the lines into chunks (<see cref="TextChunker"/>) and returns them as one stream of [BOS, ids…] documents;
    /// chunks are encoded in parallel but concatenated in order, so the result is deterministic.
    /// </summary>
    public DomainTokens EncodeDomain(string domain, IEnumerable<string> lines, int chunkCharacters, CancellationToken ct = default)
    {
        var chunks = TextChunker.Chunk(lines, chunkCharacters);
        var encoded = new int[chunks.Count][];
        Parallel.For(0, chunks.Count, new ParallelOptions { CancellationToken = ct }, i => encoded[i] = Encode(chunks[i]));
        var stream = new int[encoded.Sum(e => e.Length + 1)];
        int at = 0;
        foreach (var e in encoded)
        {
            stream[at++] = BosId;
            e.CopyTo(stream, at);
            at += e.Length;
        }
        return new DomainTokens(domain, stream, chunks.Count);
    }
}
