using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using MoECompress.Formats.Safetensors;
using MoECompress.Tests.Calibration;

namespace MoECompress.Tests.Gguf;

/// <summary>
/// A small Mixtral-layout model with the Mistral SentencePiece tokenizer (32,000 ids, tests/data/tokenizers/mistral-v1),
/// so it can be evaluated on text: H = 64, I = 64 (whole Q8_0/Q4_0 blocks, K-quants fall back), 2 layers × 4 experts,
/// untied lm_head; float32 Gaussian weights from a fixed seed. Written once per test run.
/// </summary>
internal static class GgufTestModels
{
    public const int Hidden = 64, Intermediate = 64, Layers = 2, Experts = 4, Vocab = 32000;

    private static readonly Lazy<string> MixtralDir = new(() => WriteMixtral(TinyCalibrationModel.NewPath("gguf-mixtral")));

    public static string Mixtral => MixtralDir.Value;

    private static string WriteMixtral(string dir)
    {
        var config = new JsonObject
        {
            ["architectures"] = new JsonArray("MixtralForCausalLM"), ["model_type"] = "mixtral",
            ["hidden_size"] = Hidden, ["intermediate_size"] = Intermediate, ["num_hidden_layers"] = Layers,
            ["num_attention_heads"] = 4, ["num_key_value_heads"] = 2, ["head_dim"] = 16, ["num_local_experts"] = Experts,
            ["num_experts_per_tok"] = 2, ["vocab_size"] = Vocab, ["max_position_embeddings"] = 128, ["rms_norm_eps"] = 1e-5,
            ["rope_theta"] = 10000.0, ["hidden_act"] = "silu", ["tie_word_embeddings"] = false, ["bos_token_id"] = 1, ["eos_token_id"] = 2,
        };
        var tensors = new List<(string Name, long[] Shape, float Scale)> { ("model.embed_tokens.weight", [Vocab, Hidden], 1f) };
        for (var l = 0; l < Layers; l++)
        {
            var p = $"model.layers.{l}.";
            tensors.Add((p + "input_layernorm.weight", [Hidden], 0));
            tensors.Add((p + "post_attention_layernorm.weight", [Hidden], 0));
            tensors.Add((p + "self_attn.q_proj.weight", [Hidden, Hidden], 0.15f));
            tensors.Add((p + "self_attn.k_proj.weight", [32, Hidden], 0.15f));
            tensors.Add((p + "self_attn.v_proj.weight", [32, Hidden], 0.15f));
            tensors.Add((p + "self_attn.o_proj.weight", [Hidden, Hidden], 0.15f));
            tensors.Add((p + "block_sparse_moe.gate.weight", [Experts, Hidden], 0.3f));
            for (var e = 0; e < Experts; e++)
            {
                var x = $"{p}block_sparse_moe.experts.{e}.";
                tensors.Add((x + "w1.weight", [Intermediate, Hidden], 0.15f));
                tensors.Add((x + "w3.weight", [Intermediate, Hidden], 0.15f));
                tensors.Add((x + "w2.weight", [Hidden, Intermediate], 0.15f));
            }
        }
        tensors.Add(("model.norm.weight", [Hidden], 0));
        tensors.Add(("lm_head.weight", [Vocab, Hidden], 0.2f));
        var rng = new Random(77);
        using var writer = CheckpointWriter.Create(dir, tensors.Select(t => new TensorSpec(t.Name, SafetensorsDType.F32, t.Shape)).ToList(),
            new CheckpointWriterOptions { FlushToDisk = false });
        foreach (var (name, shape, scale) in tensors)
        {
            var values = new float[shape.Aggregate(1L, (a, b) => a * b)];
            for (var i = 0; i < values.Length; i++)
                values[i] = scale == 0 ? 1f + 0.1f * Gaussian(rng) : scale * Gaussian(rng);
            writer.Write(name, MemoryMarshal.AsBytes(values.AsSpan()));
        }
        writer.WriteTextFile("config.json", config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        writer.WriteFile("tokenizer.model", File.ReadAllBytes(Path.Combine(Tokenization.TokenizerTestData.MistralV1, "tokenizer.model")));
        writer.Commit();
        return dir;
    }

    private static float Gaussian(Random rng) => (float)(Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble()));
}
