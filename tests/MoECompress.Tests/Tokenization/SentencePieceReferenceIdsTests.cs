using MoECompress.Compression.Tokenization;

namespace MoECompress.Tests.Tokenization;

/// <summary>
/// The oracle: tests/data/tokenizers/mistral-v1/reference-ids.jsonl holds ids that the sentencepiece library itself
/// (0.1.97) produced for ten awkward strings, without BOS. Both loading paths must reproduce every line exactly:
/// our SentencePiece BPE encoder on tokenizer.model, and Hugging Face's tokenizers library on Mixtral's
/// tokenizer.json (the same 32k vocabulary).
/// </summary>
public sealed class SentencePieceReferenceIdsTests : IClassFixture<SentencePieceReferenceIdsTests.Tokenizers>
{
    public sealed class Tokenizers
    {
        public ITextTokenizer SentencePiece => TokenizerTestData.MistralV1Tokenizer;
        public ITextTokenizer HuggingFace => TokenizerTestData.MixtralTokenizer;
    }

    private readonly Tokenizers _t;
    public SentencePieceReferenceIdsTests(Tokenizers t) => _t = t;

    public static IEnumerable<object[]> Lines() => TokenizerTestData.ReferenceLines();

    [Fact]
    public void ReferenceFileHasTenLines() => Assert.Equal(10, Lines().Count());

    [Fact]
    public void LoaderPicksSentencePieceForModelOnlyFolderAndHuggingFaceForTokenizerJson()
    {
        Assert.IsType<SentencePieceBpeTokenizer>(_t.SentencePiece);
        Assert.IsType<HuggingFaceTokenizer>(_t.HuggingFace);
    }

    [Theory, MemberData(nameof(Lines))]
    public void TokenizerModel_WithoutBos_MatchesSentencepieceLibraryIds(int line)
    {
        var (text, expected) = TokenizerTestData.ReferenceLine(line);
        Assert.Equal(expected, _t.SentencePiece.Encode(text, addSpecialTokens: false));
    }

    [Theory, MemberData(nameof(Lines))]
    public void TokenizerModel_WithBos_IsBosIdOneThenSentencepieceLibraryIds(int line)
    {
        var (text, expected) = TokenizerTestData.ReferenceLine(line);
        Assert.Equal(new[] { 1 }.Concat(expected), _t.SentencePiece.Encode(text, addSpecialTokens: true));
    }

    [Theory, MemberData(nameof(Lines))]
    public void MixtralTokenizerJson_WithoutBos_MatchesSentencepieceLibraryIds(int line)
    {
        var (text, expected) = TokenizerTestData.ReferenceLine(line);
        Assert.Equal(expected, _t.HuggingFace.Encode(text, addSpecialTokens: false));
    }

    [Theory, MemberData(nameof(Lines))]
    public void MixtralTokenizerJson_WithBos_IsBosIdOneThenSentencepieceLibraryIds(int line)
    {
        var (text, expected) = TokenizerTestData.ReferenceLine(line);
        Assert.Equal(new[] { 1 }.Concat(expected), _t.HuggingFace.Encode(text, addSpecialTokens: true));
    }

    [Theory, MemberData(nameof(Lines))]
    public void BothPaths_DecodeTheReferenceIdsBackToTheText(int line)
    {
        var (text, expected) = TokenizerTestData.ReferenceLine(line);
        Assert.Equal(text, _t.SentencePiece.Decode(expected));
        Assert.Equal(text, _t.HuggingFace.Decode(expected));
    }

    [Fact]
    public void BothPaths_ReportTheSameVocabularyAndSpecialIds()
    {
        foreach (var tok in new[] { _t.SentencePiece, _t.HuggingFace })
        {
            Assert.Equal(32000, tok.VocabSize);
            Assert.Equal(1, tok.BosId);
            Assert.Equal(2, tok.EosId);
            Assert.Equal(new[] { 1 }, tok.SpecialPrefix);
            Assert.Empty(tok.SpecialSuffix);
        }
    }

    [Fact]
    public void Decode_SkipsSpecialTokens_LikeSkipSpecialTokensTrue()
    {
        var ids = new[] { 1 }.Concat(TokenizerTestData.ReferenceLine(1).Ids).Append(2).ToArray();
        Assert.Equal("Hello world! This is a test.", _t.SentencePiece.Decode(ids));
        Assert.Equal("Hello world! This is a test.", _t.HuggingFace.Decode(ids));
    }
}
