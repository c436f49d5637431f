using MoECompress.Formats.Errors;
using MoECompress.Formats.Families;
using MoECompress.Formats.Safetensors;
using TorchSharp;
using static TorchSharp.torch;

namespace MoECompress.Compression.Training;

/// <summary>
/// Loads a Hugging Face checkpoint written by <see cref="ReferenceCheckpointExporter"/> (Mixtral or DeepSeek-V3 layout,
/// by config.json's model_type) back into a <see cref="ReferenceTrainingModel"/> (fp32, eval mode), e.g. to evaluate
/// exactly the bf16 weights that were bundled. DeepSeek-V3 checkpoints must use what the training model implements
/// (q_lora_rank null, n_group = topk_group = 1, sigmoid noaux_tc routing with norm_topk_prob, interleaved rope without
/// scaling, every layer after the dense ones MoE, no MTP layers); anything else is refused naming the key.
/// </summary>
public static class ReferenceCheckpointLoader
{
    public static ReferenceTrainingModel Load(string checkpointDirectory)
    {
        var config = ReadConfig(checkpointDirectory);
        return config.String("model_type") switch
        {
            "mixtral" => MixtralCheckpointLoader.Load(checkpointDirectory),
            "deepseek_v3" => LoadWeights(new DeepseekV3TrainingModel(DeepseekV3Options(config, checkpointDirectory), config.Int("vocab_size"), seed: 0),
                checkpointDirectory),
            var other => throw new MoeCompressException(ErrorKind.InvalidConfig,
                $"'{config.ConfigPath}': model_type \"{other}\" is not a reference-model layout (mixtral, deepseek_v3)"),
        };
    }

    private static ReferenceModelOptions DeepseekV3Options(ConfigReader c, string dir)
    {
        void Require(bool ok, string key, string what)
        {
            if (!ok) throw new MoeCompressException(ErrorKind.InvalidConfig, $"'{c.ConfigPath}': {key} {what}, which the training model does not support");
        }
        Require(!c.Has("q_lora_rank"), "q_lora_rank", "is set (a low-rank query path)");
        Require(c.Int("n_group", 1) == 1, "n_group", "is not 1");
        Require(c.Int("topk_group", 1) == 1, "topk_group", "is not 1");
        Require((c.String("scoring_func") ?? "sigmoid") == "sigmoid", "scoring_func", "is not sigmoid");
        Require((c.String("topk_method") ?? "noaux_tc") == "noaux_tc", "topk_method", "is not noaux_tc");
        Require(c.Bool("norm_topk_prob", true), "norm_topk_prob", "is false");
        Require(c.Bool("rope_interleave", true), "rope_interleave", "is false");
        Require(!c.Has("rope_scaling"), "rope_scaling", "is set");
        Require(c.Int("moe_layer_freq", 1) == 1, "moe_layer_freq", "is not 1");
        Require(c.Int("num_nextn_predict_layers", 0) == 0, "num_nextn_predict_layers", "is not 0 (MTP layers)");
        Require(c.Int("num_key_value_heads", c.Int("num_attention_heads")) == c.Int("num_attention_heads"), "num_key_value_heads",
            "differs from num_attention_heads");
        return OptionsFor(dir) with
        {
            Layout = ReferenceModelLayout.DeepseekV3,
            Layers = c.Int("num_hidden_layers"),
            HiddenSize = c.Int("hidden_size"),
            IntermediateSize = c.Int("moe_intermediate_size"),
            DenseIntermediateSize = c.Int("intermediate_size"),
            FirstDenseLayers = c.Int("first_k_dense_replace", 0),
            Experts = c.Int("n_routed_experts"),
            SharedExperts = c.Int("n_shared_experts", 0),
            TopK = c.Int("num_experts_per_tok"),
            AttentionHeads = c.Int("num_attention_heads"),
            KvLoraRank = c.Int("kv_lora_rank"),
            QkNopeHeadDim = c.Int("qk_nope_head_dim"),
            QkRopeHeadDim = c.Int("qk_rope_head_dim"),
            VHeadDim = c.Int("v_head_dim"),
            RoutedScalingFactor = c.Double("routed_scaling_factor", 1.0),
            TieWordEmbeddings = c.Bool("tie_word_embeddings", false),
            RopeTheta = c.Double("rope_theta", 10000.0),
            RmsNormEps = c.Double("rms_norm_eps", 1e-6),
            SequenceLength = c.Int("max_position_embeddings"),
        };
    }

    /// <summary>Options of a model loaded from <paramref name="dir"/> (no training data; its tokenizer; fp32 products); the caller adds the architecture.</summary>
    internal static ReferenceModelOptions OptionsFor(string dir) => new()
    {
        TrainDataDirectory = "",
        TokenizerModelPath = Path.Combine(dir, "tokenizer.model"),
        OutputDirectory = dir,
        Bf16Matmuls = false,
    };

    /// <summary>Copies every tensor of <paramref name="model"/>'s Hugging Face names from the checkpoint; eval mode. Disposes the model on failure.</summary>
    internal static TModel LoadWeights<TModel>(TModel model, string checkpointDirectory) where TModel : ReferenceTrainingModel
    {
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

    internal static ConfigReader ReadConfig(string checkpointDirectory)
    {
        var path = Path.Combine(checkpointDirectory, "config.json");
        return new ConfigReader(ConfigReader.LoadFile(path), path);
    }
}
