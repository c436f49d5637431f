using System.Text;
using System.Text.Json;
using MoECompress.Compression.Tokenization;

namespace MoECompress.Tests.Tokenization;

/// <summary>
/// Qwen3's byte-level BPE (tokenizer.json). No ids from transformers are available offline, so these tests prove two
/// weaker things honestly: (1) decode(encode(s)) == s on awkward strings (already in NFC form: the tokenizer's NFC
/// normalizer composes e + U+0301 into é, which is checked separately), and (2) for inputs whose result can be
/// derived by hand, the ids equal entries looked up directly in tokenizer.json's vocabulary through the GPT-2
/// byte-to-character map (a single word, "Ġ" for a leading space, digits split one by one by the pre-tokenizer,
/// tab/newline bytes, a CJK character's three UTF-8 bytes, special tokens from added_tokens).
/// </summary>
public sealed class Qwen3ByteLevelBpeTests : IClassFixture<Qwen3ByteLevelBpeTests.Fixture>
{
    public sealed class Fixture
    {
        public ITextTokenizer Tokenizer => TokenizerTestData.Qwen3Tokenizer;
        public Dictionary<string, int> Vocab { get; }
        public Dictionary<string, int> AddedTokens { get; }

        public Fixture()
        {
            using var stream = File.OpenRead(Path.Combine(TokenizerTestData.Qwen3, "tokenizer.json"));
            using var doc = JsonDocument.Parse(stream);
            Vocab = doc.RootElement.GetProperty("model").GetProperty("vocab").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetInt32());
            AddedTokens = doc.RootElement.GetProperty("added_tokens").EnumerateArray()
                .ToDictionary(e => e.GetProperty("content").GetString()!, e => e.GetProperty("id").GetInt32());
        }
    }

    private readonly Fixture _f;
    public Qwen3ByteLevelBpeTests(Fixture f) => _f = f;

    /// <summary>GPT-2's bytes_to_unicode: printable bytes stand for themselves, the others for U+0100 onwards.</summary>
    private static string ByteLevel(string text)
    {
        var map = new char[256];
        int n = 0;
        for (int b = 0; b < 256; b++)
        {
            bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            map[b] = printable ? (char)b : (char)(256 + n++);
        }
        return string.Concat(Encoding.UTF8.GetBytes(text).Select(b => map[b]));
    }

    private int V(string piece)
    {
        var key = ByteLevel(piece);
        Assert.True(_f.Vocab.TryGetValue(key, out var id), $"'{key}' is not in Qwen3's vocabulary");
        return id;
    }

    [Theory]
    [InlineData("Ünïcödé — ☃ 日本語 😀")]
    [InlineData("emoji 😀🚀👨‍👩‍👧 and flags 🇫🇷")]
    [InlineData("def f(x):\n\treturn x**2  # square\r\n\n\n    pass")]
    [InlineData("The 2,345.67 numbers 0x1F and 1e-9 and 1234567890")]
    [InlineData("中文分词测试：模型压缩与专家剪枝。")]
    [InlineData("   multiple   spaces   \t\t tabs")]
    [InlineData("mixed Русский العربية हिन्दी é \u00A0 \u200B end")]
    [InlineData("")]
    public void RoundTrip_DecodeOfEncodeIsTheOriginalText(string text)
    {
        var ids = _f.Tokenizer.Encode(text, addSpecialTokens: false);
        Assert.Equal(text, _f.Tokenizer.Decode(ids));
    }

    [Fact]
    public void NfcNormalizer_ComposesACombiningAccent()
    {
        Assert.Equal(_f.Tokenizer.Encode("caf\u00E9", false), _f.Tokenizer.Encode("cafe\u0301", false));
        Assert.Equal("caf\u00E9", _f.Tokenizer.Decode(_f.Tokenizer.Encode("cafe\u0301", false)));
    }

    [Fact]
    public void SingleCommonWord_IsItsVocabularyEntry() =>
        Assert.Equal(new[] { V("Hello") }, _f.Tokenizer.Encode("Hello", false));

    [Fact]
    public void LeadingSpace_BecomesTheGPrefixedEntry() =>
        Assert.Equal(new[] { V("Hello"), V(" world") }, _f.Tokenizer.Encode("Hello world", false));

    [Fact]
    public void Digits_AreSplitOneByOne() =>
        Assert.Equal(new[] { V("2"), V("0"), V("2"), V("4") }, _f.Tokenizer.Encode("2024", false));

    [Fact]
    public void TabAndNewline_AreTheirByteCharacters()
    {
        Assert.Equal(new[] { V("\t") }, _f.Tokenizer.Encode("\t", false));
        Assert.Equal(new[] { V("\n") }, _f.Tokenizer.Encode("\n", false));
    }

    [Fact]
    public void ChineseCharacter_IsTheEntryOfItsThreeUtf8Bytes()
    {
        Assert.Equal(3, Encoding.UTF8.GetByteCount("中"));
        Assert.Equal(new[] { V("中") }, _f.Tokenizer.Encode("中", false));
    }

    [Fact]
    public void SpecialTokensInText_AreTheirAddedTokenIds()
    {
        Assert.Equal(new[] { _f.AddedTokens["<|im_end|>"] }, _f.Tokenizer.Encode("<|im_end|>", false));
        Assert.Equal(new[] { V("Hi"), _f.AddedTokens["<|endoftext|>"] }, _f.Tokenizer.Encode("Hi<|endoftext|>", false));
    }

    [Fact]
    public void NoBos_AddSpecialTokensChangesNothing_EosFromTokenizerConfig()
    {
        Assert.Null(_f.Tokenizer.BosId);
        Assert.Equal(_f.AddedTokens["<|im_end|>"], _f.Tokenizer.EosId);
        Assert.Equal(_f.Tokenizer.Encode("Hello world", false), _f.Tokenizer.Encode("Hello world", true));
        Assert.Equal(_f.Vocab.Count + _f.AddedTokens.Count, _f.Tokenizer.VocabSize);
    }
}
