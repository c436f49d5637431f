using System.Text.Json.Nodes;
using MoECompress.Compression.Training;
using MoECompress.Formats.Safetensors;
using TorchSharp;
using static TorchSharp.torch;

namespace MoECompress.Tests.Training;

public sealed class MixtralCheckpointExportTests : IDisposable
{
    private readonly string root = Path.Combine(Path.GetTempPath(), "moe-train-tests-" + Guid.NewGuid().ToString("N"));

    public MixtralCheckpointExportTests() => Directory.CreateDirectory(root);

    public void Dispose()
    {
        if (Directory.Exists(root)) Directory.Delete(root, recursive: true);
    }


    private ReferenceModelOptions WriteTinyRun(string output)
    {
        var train = Path.Combine(root, "train");
        Directory.CreateDirectory(train);
        File.WriteAllLines(Path.Combine(train, "prose.txt"),
            Enumerable.Range(0, 40).Select(i => $"The quick brown fox number {i} jumps over the lazy dog."));
        File.WriteAllLines(Path.Combine(train, "code.txt"),
            Enumerable.Range(0, 40).Select(i => $"for (int i = 0; i < {i}; i++) {{ total += i * {i}; }}"));
        return TinyTrainingFixture.Options(steps: 2, seed: 5, output: output) with
        {
            TrainDataDirectory = train,
            TokenizerModelPath = TrainingRepository.MistralTokenizerModel,
            SequenceLength = 16,
        };
    }

    [Fact]
    public void TrainWritesAHuggingFaceMixtralCheckpoint()
    {
        var output = Path.Combine(root, "model");
        var options = WriteTinyRun(output);
        var result = ReferenceModelTrainer.Train(options);

        Assert.Equal(2 * options.BatchSize * options.SequenceLength, result.TokensSeen);
        foreach (var name in new[] { "config.json", "model.safetensors", "generation_config.json", "tokenizer.model", "tokenizer_config.json", "training-loss.csv", "training-loss.png" })
            Assert.True(File.Exists(Path.Combine(output, name)), $"{name} missing");
        var png = File.ReadAllBytes(Path.Combine(output, "training-loss.png"));
        Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, png[..4]);
        Assert.True(png.Length > 5_000, $"training-loss.png has only {png.Length} bytes");

        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(output, "config.json")))!.AsObject();
        Assert.Equal("MixtralForCausalLM", config["architectures"]![0]!.GetValue<string>());
        Assert.Equal("mixtral", config["model_type"]!.GetValue<string>());
        Assert.Equal(32000, config["vocab_size"]!.GetValue<int>());
        Assert.Equal(4, config["num_local_experts"]!.GetValue<int>());
        Assert.Equal(2, config["num_experts_per_tok"]!.GetValue<int>());
        Assert.True(config["tie_word_embeddings"]!.GetValue<bool>());
        var tokConfig = JsonNode.Parse(File.ReadAllText(Path.Combine(output, "tokenizer_config.json")))!.AsObject();
        Assert.True(tokConfig["add_bos_token"]!.GetValue<bool>());
        Assert.False(tokConfig["add_eos_token"]!.GetValue<bool>());
        Assert.Equal("<s>", tokConfig["bos_token"]!.GetValue<string>());
        Assert.Equal("</s>", tokConfig["eos_token"]!.GetValue<string>());

        var expected = new Dictionary<string, long[]>
        {
            ["model.embed_tokens.weight"] = [32000, 16],
            ["model.norm.weight"] = [16],
        };
        for (int l = 0; l < 2; l++)
        {
            var p = $"model.layers.{l}.";
            expected[p + "input_layernorm.weight"] = [16];
            expected[p + "post_attention_layernorm.weight"] = [16];
            expected[p + "self_attn.q_proj.weight"] = [16, 16];
            expected[p + "self_attn.k_proj.weight"] = [8, 16];
            expected[p + "self_attn.v_proj.weight"] = [8, 16];
            expected[p + "self_attn.o_proj.weight"] = [16, 16];
            expected[p + "block_sparse_moe.gate.weight"] = [4, 16];
            for (int e = 0; e < 4; e++)
            {
                expected[p + $"block_sparse_moe.experts.{e}.w1.weight"] = [24, 16];
                expected[p + $"block_sparse_moe.experts.{e}.w3.weight"] = [24, 16];
                expected[p + $"block_sparse_moe.experts.{e}.w2.weight"] = [16, 24];
            }
        }
        using var file = SafetensorsFile.Open(Path.Combine(output, "model.safetensors"));
        Assert.Equal(expected.Keys.Order(StringComparer.Ordinal), file.Names.Order(StringComparer.Ordinal));
        foreach (var (name, shape) in expected)
        {
            var info = file.GetInfo(name);
            Assert.Equal(SafetensorsDType.BF16, info.DType);
            Assert.Equal(shape, info.Shape);
        }
        Assert.False(file.Contains("lm_head.weight"));
    }

    [Fact]
    public void ExportedCheckpointLoadsBackToTheSameBf16Weights()
    {
        var output = Path.Combine(root, "model");
        var options = WriteTinyRun(output) with { TieWordEmbeddings = false };
        var encoder = new SentencePieceEncoder(options.TokenizerModelPath);
        using var model = new MixtralTrainingModel(options, encoder.VocabularySize, seed: 17);
        ReferenceCheckpointExporter.Export(model, encoder, options.TokenizerModelPath, output);
        using var loaded = MixtralCheckpointLoader.Load(output);
        using var scope = NewDisposeScope();
        var original = model.NamedHuggingFaceTensors().ToDictionary(t => t.Name, t => t.Tensor.detach());
        int count = 0;
        foreach (var (name, tensor) in loaded.NamedHuggingFaceTensors())
        {
            var rounded = original[name].to(ScalarType.BFloat16).to(ScalarType.Float32);
            Assert.True(rounded.eq(tensor.detach()).all().item<bool>(), $"{name} differs after the round trip");
            count++;
        }
        Assert.Equal(original.Count, count);
        Assert.Contains("lm_head.weight", original.Keys);
    }

    [Fact]
    public void RefusesAnExistingOutputFolder()
    {
        var output = Path.Combine(root, "exists");
        Directory.CreateDirectory(output);
        var options = WriteTinyRun(output);
        var ex = Assert.Throws<MoECompress.Formats.Errors.MoeCompressException>(() => ReferenceModelTrainer.Train(options));
        Assert.Contains(output, ex.Message);
    }
}
