using System.Text.Json.Nodes;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Safetensors;
using TorchSharp;
using static TorchSharp.torch;

namespace MoECompress.Compression.Training;

/// <summary>
/// Loads a Hugging Face Mixtral checkpoint written by <see cref="MixtralCheckpointExporter"/> (or any Mixtral
/// checkpoint small enough for memory) back into a <see cref="MixtralTrainingModel"/> (fp32, eval mode), e.g. to
/// evaluate exactly the bf16 weights that were bundled.
/// </summary>
public static class MixtralCheckpointLoader
{
    public static MixtralTrainingModel Load(string checkpointDirectory)
    {
        var configPath = Path.Combine(checkpointDirectory, "config.json");
        if (!File.Exists(configPath))
            throw new MoeCompressException(ErrorKind.InvalidConfig, $"'{configPath}' does not exist");
        JsonObject config;
        try { config = JsonNode.Parse(File.ReadAllText(configPath))!.AsObject(); }
        catch (Exception ex) { throw new MoeCompressException(ErrorKind.InvalidConfig, $"'{configPath}' is not valid JSON: {ex.Message}", ex); }
        if (config["model_type"]?.GetValue<string>() != "mixtral")
            throw new MoeCompressException(ErrorKind.InvalidConfig, $"'{configPath}': model_type must be \"mixtral\"");

        int Int(string key) => config[key]?.GetValue<int>()
            ?? throw new MoeCompressException(ErrorKind.InvalidConfig, $"'{configPath}' lacks \"{key}\"");
        double Double(string key, double dflt) => config[key] is JsonNode n ? n.GetValue<double>() : dflt;
        var options = new ReferenceModelOptions
        {
            TrainDataDirectory = "",
            TokenizerModelPath = Path.Combine(checkpointDirectory, "tokenizer.model"),
            OutputDirectory = checkpointDirectory,
            Layers = Int("num_hidden_layers"),
            HiddenSize = Int("hidden_size"),
            IntermediateSize = Int("intermediate_size"),
            Experts = Int("num_local_experts"),
            TopK = Int("num_experts_per_tok"),
            AttentionHeads = Int("num_attention_heads"),
            KeyValueHeads = config["num_key_value_heads"] is JsonNode kv ? kv.GetValue<int>() : Int("num_attention_heads"),
            TieWordEmbeddings = config["tie_word_embeddings"]?.GetValue<bool>() ?? false,
            RopeTheta = Double("rope_theta", 1e6),
            RmsNormEps = Double("rms_norm_eps", 1e-5),
            SequenceLength = Int("max_position_embeddings"),
            Bf16Matmuls = false,
        };
        if (config["head_dim"] is JsonNode hd && hd.GetValue<int>() != options.HiddenSize / options.AttentionHeads)
            throw new MoeCompressException(ErrorKind.InvalidConfig,
                $"'{configPath}': head_dim {hd} differs from hidden_size/num_attention_heads, which this model does not support");

        var model = new MixtralTrainingModel(options, Int("vocab_size"), seed: 0);
        try
        {
            using var source = SafetensorsCheckpoint.Open(checkpointDirectory);
            using var noGrad = no_grad();
            foreach (var (name, target) in model.NamedHuggingFaceTensors())
                CopyTensor(source, checkpointDirectory, name, target, "tensor is missing", "config's");
            model.eval();
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Copies tensor <paramref name="name"/> of <paramref name="source"/> into <paramref name="target"/> (float32),
    /// throwing <see cref="CheckpointFormatException"/> naming the tensor when it is missing or its shape differs from
    /// <paramref name="shapeOwner"/>'s.
    /// </summary>
    internal static void CopyTensor(SafetensorsCheckpoint source, string checkpoint, string name, Tensor target, string missing, string shapeOwner)
    {
        using var scope = NewDisposeScope();
        if (!source.Contains(name)) throw new CheckpointFormatException(checkpoint, name, null, missing);
        var value = source.ToTensor(name, ScalarType.Float32);
        if (!value.shape.SequenceEqual(target.shape))
            throw new CheckpointFormatException(checkpoint, name, null,
                $"shape [{string.Join(", ", value.shape)}] differs from {shapeOwner} [{string.Join(", ", target.shape)}]");
        target.copy_(value);
    }
}
