using System.Text;
using MoECompress.Compression.Tokenization;

namespace MoECompress.Tests.Tokenization;

/// <summary>
/// Differential tests beyond the ten reference strings: our SentencePiece BPE encoder (score-ordered merges,
/// leftmost first on ties, as sentencepiece's bpe_model.cc) and Hugging Face's Rust BPE (rank-ordered merges from
/// Mixtral's tokenizer.json) are independent implementations over the same vocabulary; agreeing on generated awkward
/// text is evidence, not proof, that both match sentencepiece. Runs of repeated punctuation are included on purpose:
/// they create equal-score merge candidates side by side, where tie-breaking decides the ids
/// (Microsoft.ML.Tokenizers 2.0.1 gets ":///" and "}}}$," wrong there).
/// </summary>
public sealed class SentencePieceBpeAgreementTests : IClassFixture<SentencePieceReferenceIdsTests.Tokenizers>
{
    private readonly SentencePieceReferenceIdsTests.Tokenizers _t;
    public SentencePieceBpeAgreementTests(SentencePieceReferenceIdsTests.Tokenizers t) => _t = t;

    [Theory]
    [InlineData("cp://@:///...// port")]
    [InlineData("boldsymbol{\\theta}}}$, and time")]
    [InlineData("') {\n                return this.")]
    [InlineData("sous cette forme,,,.")]
    [InlineData("aaaaaaaaaaaaaaaaaaaaaaaaa")]
    [InlineData("======== ******** -------- ________")]
    public void TieBreakingRuns_GiveTheSameIdsAsHuggingFace(string text)
    {
        Assert.Equal(_t.HuggingFace.Encode(text, false), _t.SentencePiece.Encode(text, false));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void GeneratedAwkwardText_GivesTheSameIdsAsHuggingFace(int seed)
    {
        var text = GenerateAwkwardText(seed, 20_000);
        var expected = _t.HuggingFace.Encode(text, false);
        var actual = _t.SentencePiece.Encode(text, false);
        int firstDiff = 0;
        while (firstDiff < Math.Min(expected.Length, actual.Length) && expected[firstDiff] == actual[firstDiff]) firstDiff++;
        Assert.True(expected.SequenceEqual(actual),
            $"first difference at token {firstDiff}: hf {Slice(expected, firstDiff)} vs ours {Slice(actual, firstDiff)}");
        Assert.Equal(text, _t.SentencePiece.Decode(actual));
    }

    private static string Slice(int[] ids, int at) => "[" + string.Join(",", ids.Skip(Math.Max(0, at - 2)).Take(6)) + "]";

    /// <summary>Words, code, runs of punctuation and spaces, digits, tabs/newlines, accented Latin, CJK, emoji, rare symbols.
    /// No literal special tokens ("&lt;s&gt;"): Hugging Face maps those to their ids, sentencepiece encodes them as text.</summary>
    internal static string GenerateAwkwardText(int seed, int length)
    {
        var rng = new Random(seed);
        string[] words = ["the", "model", "expert", "Mixture", "of", "Experts", "routing", "calibration", "naïve", "café", "Zürich",
            "日本語", "中文", "測試", "😀", "🚀", "☃", "€", "—", "«quote»", "x**2", "f(x)", "0x1F", "1e-9", "3.14159", "2,345.67",
            "return", "def", "class", "{", "}", "[", "]", "(", ")", "<tag>", "</tag>", "::", "->", "=>", "&&", "||", "#", "//", "/*", "*/",
            "\\begin{equation}", "$x$", "@-@", "Ωμέγα", "Привет", "مرحبا", "शब्द", "\u00A0", "\u200B", "ﬁ", "Å", "e\u0301"];
        string[] runs = ["/", "}", ",", ".", "=", "-", "*", "_", "!", "?", " ", "\t", "\n", "#", "a", "0", ":", ";", "~", "'"];
        var sb = new StringBuilder();
        while (sb.Length < length)
        {
            switch (rng.Next(6))
            {
                case 0:
                    var r = runs[rng.Next(runs.Length)];
                    sb.Append(string.Concat(Enumerable.Repeat(r, 1 + rng.Next(7))));
                    break;
                case 1:
                    sb.Append(rng.Next(100000));
                    break;
                case 2:
                    sb.Append(rng.Next(3) == 0 ? "\n" : rng.Next(2) == 0 ? "  " : "\t");
                    break;
                default:
                    sb.Append(words[rng.Next(words.Length)]);
                    sb.Append(rng.Next(4) == 0 ? "" : " ");
                    break;
            }
        }
        return sb.ToString();
    }
}
