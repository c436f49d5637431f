using MoECompress.Formats.Errors;

namespace MoECompress.Compression.Training;

/// <summary>
/// Loads a Hugging Face Mixtral checkpoint written by <see cref="ReferenceCheckpointExporter"/> (or any Mixtral
/// checkpoint small enough for memory) back into a <see cref="MixtralTrainingModel"/> (fp32, eval mode), e.g. to
/// evaluate exactly the bf16 weights that were bundled. <see cref="ReferenceCheckpointLoader"/> loads either layout.
/// </summary>
public static class MixtralCheckpointLoader
{
    public static MixtralTrainingModel Load(string checkpointDirectory)
    {
        var c = ReferenceCheckpointLoader.ReadConfig(checkpointDirectory);
        if (c.String("model_type") != "mixtral")
            throw new MoeCompressException(ErrorKind.InvalidConfig, $"'{c.ConfigPath}': model_type must be \"mixtral\"");
        var options = ReferenceCheckpointLoader.OptionsFor(checkpointDirectory) with
        {
            Layers = c.Int("num_hidden_layers"),
            HiddenSize = c.Int("hidden_size"),
            IntermediateSize = c.Int("intermediate_size"),
            Experts = c.Int("num_local_experts"),
            TopK = c.Int("num_experts_per_tok"),
            AttentionHeads = c.Int("num_attention_heads"),
            KeyValueHeads = c.Int("num_key_value_heads", c.Int("num_attention_heads")),
            TieWordEmbeddings = c.Bool("tie_word_embeddings", false),
            RopeTheta = c.Double("rope_theta", 1e6),
            RmsNormEps = c.Double("rms_norm_eps", 1e-5),
            SequenceLength = c.Int("max_position_embeddings"),
        };
        if (c.OptionalInt("head_dim") is { } hd && hd != options.HiddenSize / options.AttentionHeads)
            throw new MoeCompressException(ErrorKind.InvalidConfig,
                $"'{c.ConfigPath}': head_dim {hd} differs from hidden_size/num_attention_heads, which this model does not support");
        return ReferenceCheckpointLoader.LoadWeights(new MixtralTrainingModel(options, c.Int("vocab_size"), seed: 0), checkpointDirectory);
    }
}
