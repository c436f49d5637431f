using System.Text.Json.Nodes;
using MoECompress.Compression.Quantization;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Quantized;

namespace MoECompress.Tests.Quantization;

public class QuantizationConfigTests
{
    private static string Expert(int layer, int expert, string proj) => $"model.layers.{layer}.block_sparse_moe.experts.{expert}.{proj}";

    private static Dictionary<string, QuantizationScheme> Mixed()
    {
        var q = new Dictionary<string, QuantizationScheme>();
        for (int l = 0; l < 2; l++)
            for (int e = 0; e < 12; e++)
                foreach (var p in new[] { "w1", "w2", "w3" })
                    q[Expert(l, e, p)] = e == 1 ? new QuantizationScheme(3, 64) : e == 10 ? new QuantizationScheme(8, -1, true) : new QuantizationScheme(4, 128, true);
        return q;
    }

    private static readonly string[] Unquantized = ["lm_head", "model.layers.0.block_sparse_moe.gate", "model.layers.1.block_sparse_moe.gate"];

    [Fact]
    public void Gptq_config_uses_the_common_scheme_as_base_and_dynamic_rules_for_the_rest()
    {
        var quantized = Mixed();
        var json = QuantizationConfigBuilder.Build(QuantizedFormat.Gptq, quantized, Unquantized, actOrder: true)!;
        Assert.Equal("gptq", (string?)json["quant_method"]);
        Assert.Equal(4, (int)json["bits"]!);
        Assert.Equal(128, (int)json["group_size"]!);
        Assert.True((bool)json["sym"]!);
        Assert.True((bool)json["desc_act"]!);
        Assert.Equal("gptq", (string?)json["checkpoint_format"]);
        var dynamic = (JsonObject)json["dynamic"]!;
        Assert.Equal(3, dynamic.Count); // 3-bit, 8-bit, and the "-:" rule
        Assert.Contains(dynamic, kv => kv.Key.StartsWith("-:") && kv.Value is JsonObject { Count: 0 });

        var read = GptqQuantizationConfig.Read(json, "config.json");
        foreach (var (module, scheme) in quantized)
            Assert.Equal(QuantizedModuleWriter.ToPacked(scheme), read.SchemeFor(module));
        foreach (var module in Unquantized) Assert.Null(read.SchemeFor(module));
        // Exact names only: expert 1's rule must not catch expert 10 or 11 (a prefix match would).
        Assert.Equal(3, read.SchemeFor(Expert(0, 1, "w1"))!.Bits);
        Assert.Equal(4, read.SchemeFor(Expert(0, 11, "w1"))!.Bits);
        Assert.Equal(4, read.SchemeFor("model.layers.5.block_sparse_moe.experts.0.w1")!.Bits); // unlisted: base
    }

    [Fact]
    public void Gptq_dynamic_follows_gptqmodel_semantics()
    {
        // The example of ModelCloud/TinyLlama-1.1B-Chat-v1.0-GPTQ-4bits-dynamic-cfg: layers ≥ 2 unquantized, layer 1 at
        // 8 bits / group 32, the rest at the base 4 bits / group 128. Keys are re.match patterns, first match wins.
        var q = JsonNode.Parse("""
            { "quant_method": "gptq", "bits": 4, "group_size": 128, "sym": true, "desc_act": true, "checkpoint_format": "gptq",
              "dynamic": { "-:model\\.layers\\.([2-9]\\d*|[1-9]\\d+)\\..*": {}, ".*\\.1\\..*": { "bits": 8, "group_size": 32, "desc_act": false } } }
            """)!.AsObject();
        var read = GptqQuantizationConfig.Read(q, "config.json");
        Assert.Equal(new PackedScheme(4, 128, true), read.SchemeFor("model.layers.0.mlp.gate_proj"));
        Assert.Equal(new PackedScheme(8, 32, true), read.SchemeFor("model.layers.1.mlp.gate_proj"));
        Assert.Null(read.SchemeFor("model.layers.2.mlp.gate_proj"));
        Assert.Null(read.SchemeFor("model.layers.10.self_attn.q_proj"));
        Assert.True(read.StoresZeroMinusOne);
    }

    [Fact]
    public void Compressed_tensors_config_with_one_scheme_targets_linear_and_ignores_the_rest()
    {
        var quantized = Mixed().ToDictionary(kv => kv.Key, _ => new QuantizationScheme(4, 128, false));
        var json = QuantizationConfigBuilder.Build(QuantizedFormat.CompressedTensors, quantized, Unquantized, actOrder: false)!;
        Assert.Equal("compressed-tensors", (string?)json["quant_method"]);
        Assert.Equal("pack-quantized", (string?)json["format"]);
        var group = (JsonObject)json["config_groups"]!["group_0"]!;
        Assert.Equal(["Linear"], group["targets"]!.AsArray().Select(n => (string)n!));
        var weights = (JsonObject)group["weights"]!;
        Assert.Equal((4, "int", false, "group", 128), ((int)weights["num_bits"]!, (string)weights["type"]!, (bool)weights["symmetric"]!,
            (string)weights["strategy"]!, (int)weights["group_size"]!));
        Assert.Null(weights["actorder"]);
        Assert.Equal(Unquantized.Order(StringComparer.Ordinal), json["ignore"]!.AsArray().Select(n => (string)n!));

        var read = CompressedTensorsQuantizationConfig.Read(json, "config.json");
        Assert.Equal(new PackedScheme(4, 128, false), read.SchemeFor(Expert(1, 3, "w2")));
        Assert.Null(read.SchemeFor("model.layers.0.block_sparse_moe.gate"));
    }

    [Fact]
    public void Compressed_tensors_config_with_several_schemes_lists_modules_per_group()
    {
        var quantized = Mixed();
        var json = QuantizationConfigBuilder.Build(QuantizedFormat.CompressedTensors, quantized, Unquantized, actOrder: true)!;
        var groups = (JsonObject)json["config_groups"]!;
        Assert.Equal(3, groups.Count);
        // Most modules first (4-bit, 60 modules); the 3-bit and 8-bit groups tie at 6, the wider one first.
        Assert.Equal(4, (int)groups["group_0"]!["weights"]!["num_bits"]!);
        Assert.Equal(8, (int)groups["group_1"]!["weights"]!["num_bits"]!);
        Assert.Equal("channel", (string?)groups["group_1"]!["weights"]!["strategy"]);
        Assert.Null(groups["group_1"]!["weights"]!["group_size"]);
        Assert.Equal(6, groups["group_2"]!["targets"]!.AsArray().Count);
        Assert.Equal("group", (string?)groups["group_0"]!["weights"]!["actorder"]);
        var read = CompressedTensorsQuantizationConfig.Read(json, "config.json");
        foreach (var (module, scheme) in quantized)
            Assert.Equal(QuantizedModuleWriter.ToPacked(scheme), read.SchemeFor(module));
        Assert.Null(read.SchemeFor("lm_head"));
    }

    [Fact]
    public void Compressed_tensors_targets_may_be_regular_expressions()
    {
        var q = JsonNode.Parse("""
            { "quant_method": "compressed-tensors", "format": "pack-quantized",
              "config_groups": {
                "group_0": { "targets": ["re:.*experts\\.0\\..*"], "weights": { "num_bits": 8, "type": "int", "symmetric": true, "strategy": "channel" } },
                "group_1": { "targets": ["Linear"], "weights": { "num_bits": 4, "type": "int", "symmetric": false, "strategy": "group", "group_size": 32 } } },
              "ignore": ["re:.*\\.gate$", "lm_head"] }
            """)!.AsObject();
        var read = CompressedTensorsQuantizationConfig.Read(q, "config.json");
        Assert.Equal(new PackedScheme(8, -1, true), read.SchemeFor(Expert(0, 0, "w1")));
        Assert.Equal(new PackedScheme(4, 32, false), read.SchemeFor(Expert(0, 2, "w1")));
        Assert.Null(read.SchemeFor("model.layers.0.block_sparse_moe.gate"));
    }

    [Theory]
    [InlineData("""{ "quant_method": "compressed-tensors", "format": "float-quantized", "config_groups": {} }""", "float-quantized")]
    [InlineData("""{ "quant_method": "compressed-tensors", "format": "pack-quantized", "config_groups": { "g": { "targets": ["Linear"], "weights": { "num_bits": 4, "type": "float", "strategy": "group", "group_size": 16 } } } }""", "type")]
    [InlineData("""{ "quant_method": "compressed-tensors", "format": "pack-quantized", "config_groups": { "g": { "targets": ["Linear"], "weights": { "num_bits": 4, "type": "int", "strategy": "tensor" } } } }""", "strategy")]
    [InlineData("""{ "quant_method": "compressed-tensors", "format": "pack-quantized", "config_groups": { "g": { "targets": ["Linear"], "weights": { "num_bits": 8, "type": "int", "strategy": "channel" }, "input_activations": { "num_bits": 8 } } } }""", "activations")]
    public void Unsupported_compressed_tensors_configs_are_named(string json, string expected)
    {
        var e = Assert.Throws<MoeCompressException>(() => CompressedTensorsQuantizationConfig.Read(JsonNode.Parse(json)!.AsObject(), "config.json"));
        Assert.Equal(ErrorKind.InvalidConfig, e.Kind);
        Assert.Contains(expected, e.Message);
        Assert.Contains("config.json", e.Message);
    }

    [Fact]
    public void A_module_listed_both_ways_is_a_caller_error()
    {
        var q = new Dictionary<string, QuantizationScheme> { ["lm_head"] = new(4) };
        Assert.Throws<ArgumentException>(() => QuantizationConfigBuilder.Build(QuantizedFormat.Gptq, q, ["lm_head"], false));
        Assert.Throws<ArgumentException>(() => QuantizationConfigBuilder.Build(QuantizedFormat.Gptq, new Dictionary<string, QuantizationScheme>(), [], false));
    }
}
