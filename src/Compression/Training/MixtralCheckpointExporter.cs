using System.Text.Json;
using System.Text.Json.Nodes;
using TorchSharp;
using static TorchSharp.torch;

namespace MoECompress.Compression.Training;

/// <summary>
/// Writes a <see cref="MixtralTrainingModel"/> as a Hugging Face Mixtral checkpoint: config.json
/// (MixtralForCausalLM), model.safetensors (bf16, HF tensor names), generation_config.json, the SentencePiece
/// tokenizer.model and tokenizer_config.json (add_bos_token true, add_eos_token false).
/// </summary>
public static class MixtralCheckpointExporter
{
    public static void Export(MixtralTrainingModel model, SentencePieceEncoder encoder, string tokenizerModelPath, string outputDirectory)
    {
        Directory.CreateDirectory(outputDirectory);
        var o = model.Options;
        WriteWeights(model, Path.Combine(outputDirectory, "model.safetensors"));
        WriteJson(Path.Combine(outputDirectory, "config.json"), BuildConfig(o, model.VocabularySize, encoder.BosId, encoder.EosId));
        WriteJson(Path.Combine(outputDirectory, "generation_config.json"), new JsonObject
        {
            ["_from_model_config"] = true,
            ["bos_token_id"] = encoder.BosId,
            ["eos_token_id"] = encoder.EosId,
            ["transformers_version"] = "4.46.0",
        });
        WriteJson(Path.Combine(outputDirectory, "tokenizer_config.json"), BuildTokenizerConfig(o.SequenceLength));
        File.Copy(tokenizerModelPath, Path.Combine(outputDirectory, "tokenizer.model"), overwrite: true);
    }

    /// <summary>The config.json of the model (Hugging Face MixtralConfig keys).</summary>
    public static JsonObject BuildConfig(ReferenceModelOptions o, long vocabularySize, int bosId, int eosId) => new()
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
        ["router_aux_loss_coef"] = o.AuxLossCoefficient,
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

    private static void WriteJson(string path, JsonNode node)
    {
        var text = node.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n";
        File.WriteAllText(path, text, new System.Text.UTF8Encoding(false));
    }

    /// <summary>All HF tensors in bf16, in name order, as one safetensors file (header with __metadata__ format=pt).</summary>
    private static void WriteWeights(MixtralTrainingModel model, string path)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var tensors = model.NamedHuggingFaceTensors()
            .Select(nt => (nt.Name, Tensor: nt.Tensor.detach().to(ScalarType.BFloat16).contiguous()))
            .OrderBy(nt => nt.Name, StringComparer.Ordinal).ToList();
        var header = new JsonObject { ["__metadata__"] = new JsonObject { ["format"] = "pt" } };
        long offset = 0;
        foreach (var (name, t) in tensors)
        {
            long bytes = t.numel() * 2;
            header[name] = new JsonObject
            {
                ["dtype"] = "BF16",
                ["shape"] = new JsonArray(t.shape.Select(s => (JsonNode)s).ToArray()),
                ["data_offsets"] = new JsonArray(offset, offset + bytes),
            };
            offset += bytes;
        }
        var headerBytes = System.Text.Encoding.UTF8.GetBytes(header.ToJsonString());
        int padded = (headerBytes.Length + 7) / 8 * 8;
        var tmp = path + ".tmp";
        using (var stream = new FileStream(tmp, FileMode.Create, FileAccess.Write))
        {
            stream.Write(BitConverter.GetBytes((ulong)padded));
            stream.Write(headerBytes);
            for (int i = headerBytes.Length; i < padded; i++) stream.WriteByte((byte)' ');
            foreach (var (_, t) in tensors) stream.Write(t.bytes);
        }
        File.Move(tmp, path, overwrite: true);
    }
}
