using System.Text.Json.Nodes;
using MoECompress.Compression.Tokenization;
using MoECompress.Compression.Training;

namespace MoECompress.Tests.Training;

public class SentencePieceEncoderTests
{
    [Fact]
    public void MatchesTheSentencePieceLibraryOnTheReferenceStrings()
    {
        var encoder = new SentencePieceEncoder(TrainingRepository.MistralTokenizerModel);
        Assert.Equal(1, encoder.BosId);
        Assert.Equal(2, encoder.EosId);
        Assert.Equal(32000, encoder.VocabularySize);
        var reference = Path.Combine(Path.GetDirectoryName(TrainingRepository.MistralTokenizerModel)!, "reference-ids.jsonl");
        foreach (var line in File.ReadLines(reference).Where(l => l.Trim().Length > 0))
        {
            var record = JsonNode.Parse(line)!;
            var text = record["text"]!.GetValue<string>();
            var expected = record["ids_without_bos"]!.AsArray().Select(n => n!.GetValue<int>()).ToArray();
            Assert.Equal(expected, encoder.Encode(text));
        }
    }

    [Fact]
    public void AgreesWithTheToolkitTokenizerOnTheBundledText()
    {
        // The demo model was trained with this encoder; the engine's tools tokenize with TokenizerLoader.
        var encoder = new SentencePieceEncoder(TrainingRepository.MistralTokenizerModel);
        using var tokenizer = TokenizerLoader.Load(Path.GetDirectoryName(TrainingRepository.MistralTokenizerModel)!);
        foreach (var file in Directory.GetFiles(Path.Combine(TrainingRepository.Calibration, "heldout"), "*.txt"))
            foreach (var chunk in TextChunker.Chunk(File.ReadLines(file).Take(60), 2000))
                Assert.Equal(tokenizer.Encode(chunk, addSpecialTokens: false), encoder.Encode(chunk));
    }

    [Fact]
    public void EncodesChunksAsBosSeparatedDocuments()
    {
        var encoder = new SentencePieceEncoder(TrainingRepository.MistralTokenizerModel);
        var domain = encoder.EncodeDomain("d", ["alpha beta", "", "gamma", "delta epsilon zeta"], chunkCharacters: 20);
        // Chunks: "alpha beta\n\ngamma" (17 chars) and "delta epsilon zeta".
        Assert.Equal(2, domain.Documents);
        var expected = new[] { encoder.BosId }.Concat(encoder.Encode("alpha beta\n\ngamma"))
            .Append(encoder.BosId).Concat(encoder.Encode("delta epsilon zeta")).ToArray();
        Assert.Equal(expected, domain.Tokens);
    }
}
