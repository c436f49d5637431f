using MoECompress.Compression.Tokenization;
using MoECompress.Formats.Errors;

namespace MoECompress.Tests.Tokenization;

/// <summary>Which file the loader picks, how special tokens follow tokenizer_config.json and options, and its errors.</summary>
public sealed class TokenizerLoaderTests : IDisposable
{
    private readonly string _temp = Directory.CreateTempSubdirectory("moe-tok-test-").FullName;

    public void Dispose() => Directory.Delete(_temp, recursive: true);

    private string Folder(string name, params (string File, string? Content)[] files)
    {
        var dir = Path.Combine(_temp, name);
        Directory.CreateDirectory(dir);
        foreach (var (file, content) in files)
        {
            if (content is null) File.Copy(Path.Combine(TokenizerTestData.Mixtral, file), Path.Combine(dir, file));
            else File.WriteAllText(Path.Combine(dir, file), content);
        }
        return dir;
    }

    [Fact]
    public void FolderWithoutTokenizer_ThrowsInvalidConfigNamingFolderAndFilesLookedFor()
    {
        var dir = Folder("empty");
        var e = Assert.Throws<MoeCompressException>(() => TokenizerLoader.Load(dir));
        Assert.Equal(ErrorKind.InvalidConfig, e.Kind);
        Assert.Contains(dir, e.Message);
        Assert.Contains("tokenizer.json", e.Message);
        Assert.Contains("tokenizer.model", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void MissingFolder_ThrowsInvalidConfig()
    {
        var e = Assert.Throws<MoeCompressException>(() => TokenizerLoader.Load(Path.Combine(_temp, "nope")));
        Assert.Equal(ErrorKind.InvalidConfig, e.Kind);
        Assert.Contains("nope", e.Message);
    }

    [Fact]
    public void TokenizerJsonIsPreferredOverTokenizerModel()
    {
        var dir = Folder("both", ("tokenizer.json", null));
        File.Copy(Path.Combine(TokenizerTestData.MistralV1, "tokenizer.model"), Path.Combine(dir, "tokenizer.model"));
        using var tok = TokenizerLoader.Load(dir);
        Assert.IsType<HuggingFaceTokenizer>(tok);
    }

    [Fact]
    public void OptionsOverrideBosAndEos()
    {
        using var noBos = TokenizerLoader.Load(TokenizerTestData.Mixtral, new TokenizerOptions { AddBos = false, AddEos = true });
        Assert.Equal(new[] { 22557, 2 }, noBos.Encode("Hello", true));
        using var sp = TokenizerLoader.Load(TokenizerTestData.MistralV1, new TokenizerOptions { AddBos = false, AddEos = true });
        Assert.Equal(new[] { 22557, 2 }, sp.Encode("Hello", true));
    }

    [Fact]
    public void TokenizerConfigFlags_DecideTheFraming()
    {
        var dir = Folder("flags", ("tokenizer.json", null),
            ("tokenizer_config.json", """{"add_bos_token": false, "add_eos_token": true, "bos_token": "<s>", "eos_token": {"content": "</s>"}}"""));
        using var tok = TokenizerLoader.Load(dir);
        Assert.Empty(tok.SpecialPrefix);
        Assert.Equal(new[] { 2 }, tok.SpecialSuffix);
        Assert.Equal(new[] { 22557, 2 }, tok.Encode("Hello", true));
        Assert.Equal(new[] { 22557 }, tok.Encode("Hello", false));
    }

    [Fact]
    public void WithoutTokenizerConfig_TheTokenizerJsonTemplateGivesBos()
    {
        var dir = Folder("bare", ("tokenizer.json", null));
        using var tok = TokenizerLoader.Load(dir);
        Assert.Equal(1, tok.BosId);
        Assert.Null(tok.EosId);
        Assert.Equal(new[] { 1, 22557 }, tok.Encode("Hello", true));
    }

    [Fact]
    public void AskingForBosWhenTheTokenizerHasNone_IsAUsageError()
    {
        var e = Assert.Throws<MoeCompressException>(() => TokenizerLoader.Load(TokenizerTestData.Qwen3, new TokenizerOptions { AddBos = true }));
        Assert.Equal(ErrorKind.Usage, e.Kind);
    }

    [Fact]
    public void ConfigNamingAnUnknownToken_ThrowsInvalidConfig()
    {
        var dir = Folder("badtoken", ("tokenizer.json", null), ("tokenizer_config.json", """{"bos_token": "<nope>"}"""));
        var e = Assert.Throws<MoeCompressException>(() => TokenizerLoader.Load(dir));
        Assert.Equal(ErrorKind.InvalidConfig, e.Kind);
        Assert.Contains("<nope>", e.Message);
    }

    [Fact]
    public void MalformedTokenizerJson_ThrowsInvalidConfigNamingTheFile()
    {
        var dir = Folder("malformed", ("tokenizer.json", "{ this is not json"));
        var e = Assert.ThrowsAny<MoeCompressException>(() => TokenizerLoader.Load(dir));
        Assert.Equal(ErrorKind.InvalidConfig, e.Kind);
        Assert.Contains(Path.Combine(dir, "tokenizer.json"), e.Message);
    }

    [Fact]
    public void NotASentencePieceModel_ThrowsInvalidConfig()
    {
        var dir = Folder("badmodel", ("tokenizer.model", "definitely not protobuf"));
        var e = Assert.Throws<MoeCompressException>(() => TokenizerLoader.Load(dir));
        Assert.Equal(ErrorKind.InvalidConfig, e.Kind);
        Assert.Contains("tokenizer.model", e.Message);
    }

    [Fact]
    public void DisposedHuggingFaceTokenizer_RefusesToEncode()
    {
        var tok = TokenizerLoader.Load(TokenizerTestData.Mixtral);
        Assert.Equal(new[] { 22557 }, tok.Encode("Hello", false));
        tok.Dispose();
        tok.Dispose();
        Assert.Throws<ObjectDisposedException>(() => tok.Encode("Hello", false));
    }

    [Fact]
    public void ConcurrentEncoding_GivesTheSameIdsAsSequential()
    {
        var hf = TokenizerTestData.MixtralTokenizer;
        var sp = TokenizerTestData.MistralV1Tokenizer;
        var texts = Enumerable.Range(0, 64).Select(i => SentencePieceBpeAgreementTests.GenerateAwkwardText(100 + i, 500)).ToArray();
        foreach (var tok in new[] { hf, sp })
        {
            var sequential = texts.Select(t => tok.Encode(t, true)).ToArray();
            var parallel = new int[texts.Length][];
            Parallel.For(0, texts.Length, new ParallelOptions { MaxDegreeOfParallelism = 4 }, i => parallel[i] = tok.Encode(texts[i], true));
            for (int i = 0; i < texts.Length; i++) Assert.Equal(sequential[i], parallel[i]);
        }
    }
}
