using System.Text.Json;
using System.Text.Json.Nodes;
using MoECompress.Formats.Safetensors;
using TorchSharp;
using static TorchSharp.torch;

namespace MoECompress.Compression.Training;

/// <summary>
/// Writes a <see cref="ReferenceTrainingModel"/> as a Hugging Face checkpoint of its layout: config.json
/// (MixtralForCausalLM or DeepseekV3ForCausalLM), model.safetensors (bf16, HF tensor names; DeepSeek-V3's
/// e_score_correction_bias in float32 as DeepSeek ships it; written by CheckpointWriter with its manifest),
/// generation_config.json, the SentencePiece tokenizer.model and tokenizer_config.json (add_bos_token true,
/// add_eos_token false).
/// </summary>
public static class ReferenceCheckpointExporter
{
    /// <summary>
    /// Writes the checkpoint to <paramref name="outputDirectory"/> (which must not exist) through
    /// <see cref="CheckpointWriter"/>: the folder appears complete or not at all. <paramref name="extraTextFiles"/>
    /// (relative path → content, e.g. training-loss.csv) and <c>extraFiles</c> (bytes, e.g. training-loss.png) are written into it too.
    /// </summary>
    public static void Export(ReferenceTrainingModel model, SentencePieceEncoder encoder, string tokenizerModelPath, string outputDirectory,
        IReadOnlyDictionary<string, string>? extraTextFiles = null, JsonObject? manifestOptions = null, CancellationToken ct = default,
        IReadOnlyDictionary<string, byte[]>? extraFiles = null)
    {
        var o = model.Options;
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var tensors = model.NamedHuggingFaceTensors()
            .Select(nt => (nt.Name, Tensor: nt.Tensor.detach().to(ExportType(nt.Name)).contiguous()))
            .OrderBy(nt => nt.Name, StringComparer.Ordinal).ToList();
        var plan = tensors.Select(t => new TensorSpec(t.Name,
            t.Tensor.dtype == ScalarType.Float32 ? SafetensorsDType.F32 : SafetensorsDType.BF16, t.Tensor.shape)).ToList();
        using var writer = CheckpointWriter.Create(outputDirectory, plan, new CheckpointWriterOptions { ManifestOptions = manifestOptions });
        foreach (var (name, tensor) in tensors)
        {
            ct.ThrowIfCancellationRequested();
            writer.Write(name, tensor);
        }
        writer.WriteTextFile("config.json", ToJson(model.HuggingFaceConfig(encoder.BosId, encoder.EosId)));
        writer.WriteTextFile("generation_config.json", ToJson(new JsonObject
        {
            ["_from_model_config"] = true,
            ["bos_token_id"] = encoder.BosId,
            ["eos_token_id"] = encoder.EosId,
            ["transformers_version"] = "4.46.0",
        }));
        writer.WriteTextFile("tokenizer_config.json", ToJson(BuildTokenizerConfig(o.SequenceLength)));
        writer.WriteFile("tokenizer.model", File.ReadAllBytes(tokenizerModelPath));
        if (extraTextFiles is not null)
            foreach (var (path, content) in extraTextFiles) writer.WriteTextFile(path, content);
        if (extraFiles is not null)
            foreach (var (path, content) in extraFiles) writer.WriteFile(path, content);
        writer.Commit(ct);
    }

    /// <summary>DeepSeek-V3's selection bias stays float32 (its values are small steps that bf16 would round away); the rest is bf16.</summary>
    internal static ScalarType ExportType(string name) =>
        name.EndsWith(".e_score_correction_bias", StringComparison.Ordinal) ? ScalarType.Float32 : ScalarType.BFloat16;

    /// <summary>
    /// The config.json of a Mixtral-layout model (Hugging Face MixtralConfig keys). router_aux_loss_coef is the coefficient that gives
    /// the same loss under transformers' definition (ours / top-k); it does not affect inference.
    /// </summary>
    public static JsonObject BuildMixtralConfig(ReferenceModelOptions o, long vocabularySize, int bosId, int eosId) => new()
    {
        ["architectures"] = new JsonArray("MixtralForCausalLM"),
        ["attention_dropout"] = 0.0,
        ["bos_token_id"] = bosId,
        ["eos_token_id"] = eosId,
        ["head_dim"] = o.HiddenSize / o.AttentionHeads,
        ["hidden_act"] = "silu",
        ["hidden_size"] = o.HiddenSize,
        ["initializer_range"] = o.InitializerRange,
        ["intermediate_size"] = o.IntermediateSize,
        ["max_position_embeddings"] = o.SequenceLength,
        ["model_type"] = "mixtral",
        ["num_attention_heads"] = o.AttentionHeads,
        ["num_experts_per_tok"] = o.TopK,
        ["num_hidden_layers"] = o.Layers,
        ["num_key_value_heads"] = o.KeyValueHeads,
        ["num_local_experts"] = o.Experts,
        ["output_router_logits"] = false,
        ["rms_norm_eps"] = o.RmsNormEps,
        ["rope_theta"] = o.RopeTheta,
        // HF's load_balancing_loss_func is TopK times ours (it normalises the selection shares per top-k slot).
        ["router_aux_loss_coef"] = o.AuxLossCoefficient / o.TopK,
        ["router_jitter_noise"] = 0.0,
        ["sliding_window"] = null,
        ["tie_word_embeddings"] = o.TieWordEmbeddings,
        ["torch_dtype"] = "bfloat16",
        ["transformers_version"] = "4.46.0",
        ["use_cache"] = true,
        ["vocab_size"] = vocabularySize,
    };

    private static JsonObject BuildTokenizerConfig(int maxLength)
    {
        JsonObject Special(string content) => new()
        {
            ["content"] = content, ["lstrip"] = false, ["normalized"] = false, ["rstrip"] = false,
            ["single_word"] = false, ["special"] = true,
        };
        return new JsonObject
        {
            ["add_bos_token"] = true,
            ["add_eos_token"] = false,
            ["added_tokens_decoder"] = new JsonObject { ["0"] = Special("<unk>"), ["1"] = Special("<s>"), ["2"] = Special("</s>") },
            ["additional_special_tokens"] = new JsonArray(),
            ["bos_token"] = "<s>",
            ["clean_up_tokenization_spaces"] = false,
            ["eos_token"] = "</s>",
            ["legacy"] = true,
            ["model_max_length"] = maxLength,
            ["pad_token"] = null,
            ["sp_model_kwargs"] = new JsonObject(),
            ["spaces_between_special_tokens"] = false,
            ["tokenizer_class"] = "LlamaTokenizer",
            ["unk_token"] = "<unk>",
            ["use_default_system_prompt"] = false,
        };
    }

    private static string ToJson(JsonNode node) => node.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n";
}
