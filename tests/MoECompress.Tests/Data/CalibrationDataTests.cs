using MoECompress.Compression.Data;
using MoECompress.Compression.Tokenization;
using MoECompress.Formats.Errors;
using MoECompress.Tests.Tokenization;

namespace MoECompress.Tests.Data;

/// <summary>Calibration loading on small temporary files, with Mistral's SentencePiece tokenizer (BOS 1, EOS 2).</summary>
public sealed class CalibrationDataTests : IDisposable
{
    private readonly ITextTokenizer _tok = TokenizerTestData.MistralV1Tokenizer;
    private readonly string _dir = Directory.CreateTempSubdirectory("moe-calib-test-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Write(string name, string content)
    {
        var path = Path.Combine(_dir, name);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, content);
        return path;
    }

    private static string Text(int seed, int length) => SentencePieceBpeAgreementTests.GenerateAwkwardText(seed, length);

    [Fact]
    public void Txt_SequencesHaveSeqLen_StartWithBos_AndAreWindowsOfTheStream()
    {
        var text = Text(1, 20_000);
        var file = Write("a.txt", text);
        var stream = _tok.Encode(text, addSpecialTokens: false);

        var set = CalibrationData.Load(file, _tok, new CalibrationDataOptions { Samples = 8, SeqLen = 64 });

        Assert.Equal(8, set.Count);
        Assert.Equal(64, set.SeqLen);
        var p = set.Provenance;
        Assert.Equal(new[] { Path.GetFullPath(file) }, p.Files);
        Assert.Equal(1, p.Documents);
        Assert.Equal(stream.Length, p.TotalTokens);
        Assert.True(p.BosPrepended);
        for (int i = 0; i < set.Count; i++)
        {
            var seq = set.Sequences[i];
            Assert.Equal(64, seq.Length);
            Assert.Equal(1, seq[0]);
            Assert.Equal(stream.AsSpan((int)p.Offsets[i], 63).ToArray(), seq[1..]);
        }
    }

    [Fact]
    public void SameSeed_GivesTheSameSequences_DifferentSeedsDiffer()
    {
        var file = Write("a.txt", Text(2, 20_000));
        CalibrationSet Draw(int seed) => CalibrationData.Load(file, _tok, new CalibrationDataOptions { Samples = 6, SeqLen = 32, Seed = seed });

        var a = Draw(0);
        var b = Draw(0);
        var c = Draw(1);
        Assert.Equal(a.Provenance.Offsets, b.Provenance.Offsets);
        for (int i = 0; i < a.Count; i++) Assert.Equal(a.Sequences[i], b.Sequences[i]);
        Assert.NotEqual(a.Provenance.Offsets, c.Provenance.Offsets);
    }

    [Fact]
    public void RandomWindows_DoNotOverlap_WhenTheStreamIsLongEnough()
    {
        var file = Write("a.txt", Text(3, 20_000));
        var set = CalibrationData.Load(file, _tok, new CalibrationDataOptions { Samples = 20, SeqLen = 100, Seed = 7 });
        Assert.Equal(CalibrationSampling.RandomNonOverlapping, set.Provenance.Sampling);
        var offsets = set.Provenance.Offsets;
        for (int i = 1; i < offsets.Count; i++) Assert.True(offsets[i] - offsets[i - 1] >= 99, $"windows {i - 1} and {i} overlap");
        Assert.True(offsets[^1] + 99 <= set.Provenance.TotalTokens);
    }

    [Fact]
    public void TooFewTokensForNonOverlappingWindows_FallsBackToOverlappingDraws()
    {
        var file = Write("a.txt", Text(4, 3_000));
        var set = CalibrationData.Load(file, _tok, new CalibrationDataOptions { Samples = 100, SeqLen = 64 });
        Assert.Equal(CalibrationSampling.RandomOverlapping, set.Provenance.Sampling);
        Assert.Equal(100, set.Count);
        Assert.All(set.Provenance.Offsets, o => Assert.InRange(o, 0, set.Provenance.TotalTokens - 63));
    }

    [Theory]
    [InlineData(null)]
    [InlineData(0)]
    public void SamplesNullOrZero_TakesEveryConsecutiveWindow(int? samples)
    {
        var text = Text(5, 5_000);
        var file = Write("a.txt", text);
        int total = _tok.Encode(text, false).Length;
        var set = CalibrationData.Load(file, _tok, new CalibrationDataOptions { Samples = samples, SeqLen = 50 });
        Assert.Equal(CalibrationSampling.Sequential, set.Provenance.Sampling);
        Assert.Equal(total / 49, set.Count);
        Assert.Equal(Enumerable.Range(0, set.Count).Select(i => (long)i * 49), set.Provenance.Offsets);
    }

    [Fact]
    public void AddBosFalse_SequencesAreRawWindows()
    {
        var text = Text(6, 5_000);
        var file = Write("a.txt", text);
        var stream = _tok.Encode(text, false);
        var set = CalibrationData.Load(file, _tok, new CalibrationDataOptions { Samples = 0, SeqLen = 40, AddBos = false });
        Assert.False(set.Provenance.BosPrepended);
        Assert.Equal(stream.Length / 40, set.Count);
        Assert.Equal(stream[..40], set.Sequences[0]);
        Assert.Equal(stream[40..80], set.Sequences[1]);
    }

    [Fact]
    public void JsonlText_DocumentsAreJoinedWithEos()
    {
        var file = Write("d.jsonl", "{\"text\": \"Hello world!\"}\n\n{\"text\": \"Second document.\", \"meta\": 3}\n");
        var ev = EvaluationText.Load(file, _tok);
        var expected = new[] { 1 }.Concat(_tok.Encode("Hello world!", false)).Append(2).Concat(_tok.Encode("Second document.", false));
        Assert.Equal(expected, ev.Tokens);
        Assert.Equal(2, ev.Documents);
        Assert.Equal(2, ev.SeparatorId);
        Assert.True(ev.BosPrepended);
    }

    [Fact]
    public void JsonlInputIds_AreUsedAsTheyAre()
    {
        var file = Write("ids.jsonl", "{\"input_ids\": [5, 6, 7, 8, 9, 10]}\n{\"input_ids\": [11, 12, 13, 14]}\n");
        var set = CalibrationData.Load(file, _tok, new CalibrationDataOptions { Samples = 0, SeqLen = 12 });
        Assert.Equal(1, set.Count);
        Assert.Equal(new[] { 1, 5, 6, 7, 8, 9, 10, 2, 11, 12, 13, 14 }, set.Sequences[0]);
        Assert.Equal(2, set.Provenance.PretokenizedDocuments);
    }

    [Fact]
    public void Folder_ReadsTxtAndJsonlSortedByName_IgnoringOtherFiles()
    {
        var folder = Path.Combine(_dir, "corpus");
        Write("corpus/b.jsonl", "{\"text\": \"beta\"}\n");
        Write("corpus/a.txt", "alpha");
        Write("corpus/c.md", "ignored");
        var ev = EvaluationText.Load(folder, _tok, addBos: false);
        Assert.Equal(new[] { Path.Combine(folder, "a.txt"), Path.Combine(folder, "b.jsonl") }, ev.Files);
        Assert.Equal(_tok.Encode("alpha", false).Append(2).Concat(_tok.Encode("beta", false)), ev.Tokens);
    }

    [Fact]
    public void TextSplit_LinesAndBlankLines()
    {
        var file = Write("lines.txt", "one\ntwo\n\nthree\r\nfour\n");
        Assert.Equal(1, EvaluationText.Load(file, _tok).Documents);
        Assert.Equal(4, EvaluationText.Load(file, _tok, textSplit: TextDocumentSplit.Lines).Documents);
        var paragraphs = EvaluationText.Load(file, _tok, addBos: false, textSplit: TextDocumentSplit.BlankLines);
        Assert.Equal(2, paragraphs.Documents);
        Assert.Equal(_tok.Encode("one\ntwo", false).Append(2).Concat(_tok.Encode("three\nfour", false)), paragraphs.Tokens);
    }

    [Fact]
    public void TokenizerWithoutBos_NoBosIsAdded_EosSeparates()
    {
        var qwen = TokenizerTestData.Qwen3Tokenizer;
        var file = Write("d.jsonl", "{\"text\": \"Hello\"}\n{\"text\": \"world\"}\n");
        var ev = EvaluationText.Load(file, qwen);
        Assert.False(ev.BosPrepended);
        Assert.Equal(qwen.Encode("Hello", false).Append(qwen.EosId!.Value).Concat(qwen.Encode("world", false)), ev.Tokens);
    }

    [Fact]
    public void Progress_ReportsEachFile_AndCancellationStops()
    {
        var file = Write("a.txt", Text(8, 2_000));
        var lines = new List<string>();
        CalibrationData.Load(file, _tok, new CalibrationDataOptions { Samples = 2, SeqLen = 16 }, new SyncProgress(lines));
        Assert.Contains(lines, l => l.Contains(file));
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        Assert.ThrowsAny<OperationCanceledException>(() => CalibrationData.Load(file, _tok, cancellationToken: cts.Token));
    }

    private sealed class SyncProgress(List<string> lines) : IProgress<string>
    {
        public void Report(string value) => lines.Add(value);
    }

    // ---- errors: one line, ErrorKind.Usage, naming the file (and line where there is one) ----

    private MoeCompressException Fails(string input, CalibrationDataOptions? options = null)
    {
        var e = Assert.Throws<MoeCompressException>(() => CalibrationData.Load(input, _tok, options ?? new CalibrationDataOptions { Samples = 1, SeqLen = 8 }));
        Assert.Equal(ErrorKind.Usage, e.Kind);
        Assert.DoesNotContain('\n', e.Message);
        return e;
    }

    [Fact]
    public void MissingInput_IsNamed() => Assert.Contains("missing.txt", Fails(Path.Combine(_dir, "missing.txt")).Message);

    [Fact]
    public void EmptyFile_IsNamed()
    {
        var file = Write("empty.txt", "  \n\n ");
        var e = Fails(file);
        Assert.Contains(file, e.Message);
        Assert.Contains("empty", e.Message);
        Assert.Contains("empty", Fails(Write("blank.jsonl", "\n\n")).Message);
    }

    [Fact]
    public void BadJsonLine_NamesFileAndLine()
    {
        var file = Write("bad.jsonl", "{\"text\": \"ok\"}\n\n{\"text\": broken}\n");
        Assert.Contains($"{file}:3:", Fails(file).Message);
    }

    [Fact]
    public void JsonlWithoutTextOrInputIds_NamesFileAndLine()
    {
        var file = Write("fields.jsonl", "{\"text\": \"ok\"}\n{\"content\": \"no\"}\n");
        var e = Fails(file);
        Assert.Contains($"{file}:2:", e.Message);
        Assert.Contains("\"text\"", e.Message);
        Assert.Contains("\"input_ids\"", e.Message);
    }

    [Theory]
    [InlineData("{\"text\": 5}", "\"text\" must be a string")]
    [InlineData("[1, 2]", "expected a JSON object")]
    [InlineData("{\"input_ids\": [1, 99999]}", "input_ids[1] = 99999")]
    [InlineData("{\"input_ids\": [1, 2.5]}", "input_ids[1] is not an integer")]
    [InlineData("{\"input_ids\": \"1 2\"}", "must be an array of integers")]
    public void WrongFieldTypes_NameFileLineAndProblem(string line, string problem)
    {
        var file = Write("types.jsonl", line + "\n");
        var e = Fails(file);
        Assert.Contains($"{file}:1:", e.Message);
        Assert.Contains(problem, e.Message);
    }

    [Fact]
    public void FewerTokensThanOneSequence_IsAUsageError()
    {
        var file = Write("short.txt", "Just a few words.");
        var e = Fails(file, new CalibrationDataOptions { Samples = 1, SeqLen = 512 });
        Assert.Contains("fewer than one sequence", e.Message);
        Assert.Contains(file, e.Message);
    }

    [Fact]
    public void UnsupportedFileAndEmptyFolder_AreUsageErrors()
    {
        Assert.Contains("unsupported file type", Fails(Write("x.csv", "a,b")).Message);
        var folder = Path.Combine(_dir, "nothing");
        Directory.CreateDirectory(folder);
        Write("nothing/readme.md", "hi");
        Assert.Contains("no .txt or .jsonl files", Fails(folder).Message);
    }

    [Fact]
    public void BadOptions_AreUsageErrors()
    {
        var file = Write("a.txt", Text(9, 1_000));
        Fails(file, new CalibrationDataOptions { SeqLen = 1 });
        Fails(file, new CalibrationDataOptions { Samples = -1, SeqLen = 8 });
    }
}
