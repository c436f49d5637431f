using System.Text.Json;
using MoECompress.Compression.Tokenization;

namespace MoECompress.Tests.Tokenization;

/// <summary>Paths of the tokenizer fixtures under tests/data (found from this source file, so any build folder works).</summary>
internal static class TokenizerTestData
{

    public static string Dir(string name) => Path.Combine(Infrastructure.RepoPaths.TestData, "tokenizers", name);

    public static string MistralV1 => Dir("mistral-v1");

    private static readonly Lazy<ITextTokenizer> SharedMistral = new(() => TokenizerLoader.Load(MistralV1));
    private static readonly Lazy<ITextTokenizer> SharedMixtral = new(() => TokenizerLoader.Load(Mixtral));
    private static readonly Lazy<ITextTokenizer> SharedQwen3 = new(() => TokenizerLoader.Load(Qwen3));

    /// <summary>One instance per test run (tokenizers are thread-safe; loading Qwen3's 11 MB file takes a while).
    /// Never disposed: the process ends with the run.</summary>
    public static ITextTokenizer MistralV1Tokenizer => SharedMistral.Value;
    /// <inheritdoc cref="MistralV1Tokenizer"/>
    public static ITextTokenizer MixtralTokenizer => SharedMixtral.Value;
    /// <inheritdoc cref="MistralV1Tokenizer"/>
    public static ITextTokenizer Qwen3Tokenizer => SharedQwen3.Value;
    public static string Mixtral => Dir("mixtral-8x7b");
    public static string Qwen3 => Dir("qwen3");

    /// <summary>reference-ids.jsonl: ids produced by the sentencepiece library for awkward strings, without BOS.</summary>
    public static IEnumerable<object[]> ReferenceLines()
    {
        int line = 0;
        foreach (var text in File.ReadLines(Path.Combine(MistralV1, "reference-ids.jsonl")))
        {
            line++;
            if (text.Trim().Length == 0) continue;
            yield return [line];
        }
    }

    public static (string Text, int[] Ids) ReferenceLine(int line)
    {
        var json = File.ReadLines(Path.Combine(MistralV1, "reference-ids.jsonl")).ElementAt(line - 1);
        using var doc = JsonDocument.Parse(json);
        var text = doc.RootElement.GetProperty("text").GetString()!;
        var ids = doc.RootElement.GetProperty("ids_without_bos").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        return (text, ids);
    }

}
