using System.Text.Json;
using System.Text.Json.Nodes;
using MoECompress.Compression.Model;
using MoECompress.Formats.Families;
using MoECompress.Formats.Safetensors;
using MoECompress.Tests.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace MoECompress.Tests.Evaluation;

/// <summary>
/// A tiny random Mixtral (2 layers, hidden 16, 4 experts, top-2) held in memory, for evaluation tests: its config,
/// its tensors, an engine over them, and helpers to perturb, prune or save it as a model folder.
/// </summary>
internal sealed class TinyEvalModel : IDisposable
{
    public const int Hidden = 16;
    public const int Intermediate = 24;
    public const int Layers = 2;

    private TinyEvalModel(JsonObject config, InMemoryTensorSource tensors)
    {
        Config = config;
        Tensors = tensors;
    }

    public JsonObject Config { get; }
    public InMemoryTensorSource Tensors { get; }
    public int VocabSize => (int)Config["vocab_size"]!;
    public int Experts => (int)Config["num_local_experts"]!;

    public static TinyEvalModel Create(int vocab = 40, int experts = 4, ulong seed = 1234)
    {
        var config = new JsonObject
        {
            ["architectures"] = new JsonArray("MixtralForCausalLM"),
            ["model_type"] = "mixtral",
            ["hidden_size"] = Hidden,
            ["intermediate_size"] = Intermediate,
            ["num_hidden_layers"] = Layers,
            ["num_attention_heads"] = 4,
            ["num_key_value_heads"] = 2,
            ["num_local_experts"] = experts,
            ["num_experts_per_tok"] = 2,
            ["vocab_size"] = vocab,
            ["max_position_embeddings"] = 64,
            ["rms_norm_eps"] = 1e-5,
            ["rope_theta"] = 10000.0,
            ["hidden_act"] = "silu",
            ["tie_word_embeddings"] = false,
            ["bos_token_id"] = 1,
            ["eos_token_id"] = 2,
        };
        var source = new InMemoryTensorSource();
        using var scope = NewDisposeScope();
        var gen = new Generator(seed);
        Tensor Rand(params long[] shape) => randn(shape, generator: gen) * 0.35f;
        Tensor Norm() => ones(Hidden) + randn(new long[] { Hidden }, generator: gen) * 0.1f;
        source.Set("model.embed_tokens.weight", randn(new long[] { vocab, Hidden }, generator: gen));
        for (var l = 0; l < Layers; l++)
        {
            var p = $"model.layers.{l}.";
            source.Set(p + "input_layernorm.weight", Norm());
            source.Set(p + "post_attention_layernorm.weight", Norm());
            source.Set(p + "self_attn.q_proj.weight", Rand(Hidden, Hidden));
            source.Set(p + "self_attn.k_proj.weight", Rand(8, Hidden));
            source.Set(p + "self_attn.v_proj.weight", Rand(8, Hidden));
            source.Set(p + "self_attn.o_proj.weight", Rand(Hidden, Hidden));
            source.Set(p + "block_sparse_moe.gate.weight", Rand(experts, Hidden));
            for (var e = 0; e < experts; e++)
            {
                var x = $"{p}block_sparse_moe.experts.{e}.";
                source.Set(x + "w1.weight", Rand(Intermediate, Hidden));
                source.Set(x + "w3.weight", Rand(Intermediate, Hidden));
                source.Set(x + "w2.weight", Rand(Hidden, Intermediate));
            }
        }
        source.Set("model.norm.weight", Norm());
        source.Set("lm_head.weight", randn(new long[] { vocab, Hidden }, generator: gen) * 0.8f);
        return new TinyEvalModel(config, source);
    }

    /// <summary>A deep copy (config and tensors).</summary>
    public TinyEvalModel Clone() => new((JsonObject)Config.DeepClone(), Tensors.Clone());

    /// <summary>Adds seeded noise of the given scale to one tensor.</summary>
    public void Perturb(string name, float scale, ulong seed = 99)
    {
        using var scope = NewDisposeScope();
        var t = Tensors.Get(name);
        Tensors.Set(name, t + randn(t.shape, generator: new Generator(seed)) * scale);
    }

    /// <summary>Removes the last routed expert of every layer (tensors, router row and the config's count).</summary>
    public void DropLastExpert()
    {
        using var scope = NewDisposeScope();
        var last = Experts - 1;
        for (var l = 0; l < Layers; l++)
        {
            var p = $"model.layers.{l}.block_sparse_moe.";
            foreach (var w in new[] { "w1", "w2", "w3" }) Tensors.Remove($"{p}experts.{last}.{w}.weight");
            var router = Tensors.Get(p + "gate.weight");
            Tensors.Set(p + "gate.weight", router.narrow(0, 0, last));
        }
        Config["num_local_experts"] = last;
    }

    /// <summary>An engine over the tensors as they are now.</summary>
    public ModelEngine Engine()
    {
        var family = FamilyRegistry.Detect(Config, "config.json");
        var moe = family.ReadConfig(Config, "config.json");
        return new ModelEngine(Tensors, family, moe, Config);
    }

    /// <summary>Writes config.json and model.safetensors (F32) into <paramref name="directory"/> with the project's writer.</summary>
    public void Save(string directory)
    {
        var plan = Tensors.Names.Select(n => new TensorSpec(n, SafetensorsDType.F32, Tensors.Get(n).shape)).ToList();
        using var writer = CheckpointWriter.Create(directory, plan, new CheckpointWriterOptions { Overwrite = true, FlushToDisk = false });
        foreach (var name in Tensors.Names)
        {
            var t = Tensors.Get(name);
            if (t.dtype != ScalarType.Float32) throw new NotSupportedException(name);
            writer.Write(name, t);
        }
        writer.WriteTextFile("config.json", Config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        writer.Commit();
    }

    public void Dispose() => Tensors.Dispose();
}
