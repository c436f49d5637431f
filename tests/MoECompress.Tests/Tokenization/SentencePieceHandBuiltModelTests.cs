using MoECompress.Compression.Tokenization;

namespace MoECompress.Tests.Tokenization;

/// <summary>
/// Tiny SentencePiece models written in the test, whose results follow by hand from sentencepiece's BPE rules
/// (highest-scoring pair first, leftmost on ties; unused pieces split back; byte fallback), and a Unigram model
/// routed to Microsoft.ML.Tokenizers.
/// </summary>
public sealed class SentencePieceHandBuiltModelTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("moe-spm-test-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Save(SentencePieceModelBuilder builder, string name = "m")
    {
        var folder = Path.Combine(_dir, name);
        Directory.CreateDirectory(folder);
        builder.Write(Path.Combine(folder, "tokenizer.model"));
        return folder;
    }

    [Fact]
    public void EqualScores_TheLeftmostPairMergesFirst()
    {
        // "aaab": pairs aa(0) aa(0) ab(-1). Leftmost aa first gives [aa, a, b] -> ab -> [aa, ab].
        // Merging the right aa first would give [a, aa, b] -> aab -> [a, aab].
        var b = new SentencePieceModelBuilder { AddDummyPrefix = false }
            .Add("a", -5).Add("b", -5).Add("aa", 0).Add("ab", -1).Add("aab", -2);
        using var tok = TokenizerLoader.Load(Save(b));
        Assert.IsType<SentencePieceBpeTokenizer>(tok);
        Assert.Equal(new[] { b.Id("aa"), b.Id("ab") }, tok.Encode("aaab", false));
    }

    [Fact]
    public void HigherScore_WinsOverPosition()
    {
        // "abc": ab(-3) vs bc(-1): bc first -> [a, bc]; abc is not in the vocabulary.
        var b = new SentencePieceModelBuilder { AddDummyPrefix = false }
            .Add("a", -9).Add("b", -9).Add("c", -9).Add("ab", -3).Add("bc", -1);
        using var tok = TokenizerLoader.Load(Save(b));
        Assert.Equal(new[] { b.Id("a"), b.Id("bc") }, tok.Encode("abc", false));
    }

    [Fact]
    public void DummyPrefixAndSpaces_BecomeU2581()
    {
        var b = new SentencePieceModelBuilder().Add("\u2581", -9).Add("a", -9).Add("\u2581a", -1);
        using var tok = TokenizerLoader.Load(Save(b));
        Assert.Equal(new[] { 1, b.Id("\u2581a"), b.Id("\u2581a") }, tok.Encode("a a", true));
        Assert.Equal("a a", tok.Decode(tok.Encode("a a", true)));
    }

    [Fact]
    public void UnusedPiece_IsReachedByMergingButSplitBack()
    {
        // "abc": ab(-1, unused) merges first, then abc(-2) from ab + c is a normal piece: output [abc].
        // "abd": ab merges, abd is not a piece, so ab is output split back into [a, b] then d.
        var b = new SentencePieceModelBuilder { AddDummyPrefix = false }
            .Add("a", -9).Add("b", -9).Add("c", -9).Add("d", -9).Add("ab", -1, SentencePieceType.Unused).Add("abc", -2);
        using var tok = TokenizerLoader.Load(Save(b));
        Assert.Equal(new[] { b.Id("abc") }, tok.Encode("abc", false));
        Assert.Equal(new[] { b.Id("a"), b.Id("b"), b.Id("d") }, tok.Encode("abd", false));
    }

    [Fact]
    public void UnknownCharacters_UseByteFallbackOrOneUnknownPerRun()
    {
        var withBytes = new SentencePieceModelBuilder { AddDummyPrefix = false, ByteFallback = true }.Add("a", -1).AddBytes();
        using (var tok = TokenizerLoader.Load(Save(withBytes, "bytes")))
        {
            Assert.Equal(new[] { withBytes.Id("a"), withBytes.Id("<0xC3>"), withBytes.Id("<0xA9>") }, tok.Encode("a\u00E9", false));
            Assert.Equal("a\u00E9", tok.Decode(tok.Encode("a\u00E9", false)));
        }
        var noBytes = new SentencePieceModelBuilder { AddDummyPrefix = false }.Add("a", -1);
        using (var tok = TokenizerLoader.Load(Save(noBytes, "unk")))
            Assert.Equal(new[] { noBytes.Id("a"), 0, noBytes.Id("a") }, tok.Encode("a\u00E9\u00E8a", false));
    }

    [Fact]
    public void UnigramModel_GoesToMicrosoftMlTokenizers_AndTakesTheBestSegmentation()
    {
        // Unigram picks the segmentation with the highest total score: "▁ab" (-1) beats "▁a" + "b" (-2 + -2).
        var b = new SentencePieceModelBuilder { ModelType = 1 }
            .Add("\u2581", -5).Add("a", -5).Add("b", -5).Add("\u2581a", -2).Add("\u2581ab", -1);
        using var tok = TokenizerLoader.Load(Save(b));
        Assert.IsType<SentencePieceLibraryTokenizer>(tok);
        Assert.Equal(new[] { b.Id("\u2581ab") }, tok.Encode("ab", false));
        Assert.Equal(new[] { 1, b.Id("\u2581ab") }, tok.Encode("ab", true));
        Assert.Equal("ab", tok.Decode(tok.Encode("ab", true)));
    }
}
