using System.Text.Json.Nodes;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Families;
using MoECompress.Formats.Safetensors;
using MoECompress.Formats.Synthetic;

namespace MoECompress.Tests.Families;

public class ModelCheckpointTests
{
    private static void EditConfig(string dir, Action<JsonObject> edit)
    {
        var path = Path.Combine(dir, "config.json");
        var config = (JsonObject)JsonNode.Parse(File.ReadAllText(path))!;
        edit(config);
        File.WriteAllText(path, config.ToJsonString());
    }

    [Fact]
    public void MissingConfigIsAnInvalidConfigNamingTheFile()
    {
        using var dir = new TempDirectory();
        SyntheticCheckpoint.Write("mixtral", dir.Path);
        File.Delete(Path.Combine(dir.Path, "config.json"));
        var ex = Assert.Throws<MoeCompressException>(() => ModelCheckpoint.Open(dir.Path));
        Assert.Equal(ErrorKind.InvalidConfig, ex.Kind);
        Assert.Contains(Path.Combine(dir.Path, "config.json"), ex.Message);
    }

    [Fact]
    public void MalformedConfigIsAnInvalidConfigNamingTheFile()
    {
        using var dir = new TempDirectory();
        SyntheticCheckpoint.Write("mixtral", dir.Path);
        File.WriteAllText(Path.Combine(dir.Path, "config.json"), "{ \"architectures\": [\"MixtralForCausalLM\"], ");
        var ex = Assert.ThrowsAny<MoeCompressException>(() => ModelCheckpoint.Open(dir.Path));
        Assert.Equal(ErrorKind.InvalidConfig, ex.Kind);
        Assert.StartsWith(Path.Combine(dir.Path, "config.json") + ": invalid JSON", ex.Message);
    }

    [Fact]
    public void RouterWithFewerRowsThanTheConfigSays()
    {
        using var dir = new TempDirectory();
        SyntheticCheckpoint.Write("mixtral", dir.Path, new SyntheticOptions { Experts = 6 });
        EditConfig(dir.Path, c => c["num_local_experts"] = 8);
        var ex = Assert.Throws<MoeCompressException>(() => ModelCheckpoint.Open(dir.Path));
        Assert.Equal(ErrorKind.InvalidConfig, ex.Kind);
        Assert.Equal($"{Path.Combine(dir.Path, "config.json")} says num_local_experts=8 but tensor 'model.layers.0.block_sparse_moe.gate.weight' has 6 rows", ex.Message);
    }

    [Fact]
    public void ExpertBeyondTheConfigCount()
    {
        using var dir = new TempDirectory();
        SyntheticCheckpoint.Write("deepseek-v3", dir.Path);
        EditConfig(dir.Path, c => { c["n_routed_experts"] = 12; c["n_group"] = 4; });
        var ex = Assert.Throws<MoeCompressException>(() => ModelCheckpoint.Open(dir.Path));
        Assert.Equal(ErrorKind.InvalidConfig, ex.Kind);
        Assert.Contains("config.json says n_routed_experts=12 but tensor 'model.layers.1.mlp.experts.12.", ex.Message);
        Assert.EndsWith("belongs to expert 12", ex.Message);
    }

    [Fact]
    public void LayerBeyondTheConfigCount()
    {
        using var dir = new TempDirectory();
        SyntheticCheckpoint.Write("qwen3-moe", dir.Path);
        EditConfig(dir.Path, c => c["num_hidden_layers"] = 2);
        var ex = Assert.Throws<MoeCompressException>(() => ModelCheckpoint.Open(dir.Path));
        Assert.Equal(ErrorKind.InvalidConfig, ex.Kind);
        Assert.Contains("config.json says num_hidden_layers=2 but tensor 'model.layers.2.mlp.", ex.Message);
    }

    [Fact]
    public void ExpertShapeDisagreesWithIntermediateSize()
    {
        using var dir = new TempDirectory();
        SyntheticCheckpoint.Write("qwen3.6-moe", dir.Path);
        EditConfig(dir.Path, c => c["text_config"]!["moe_intermediate_size"] = 48);
        var ex = Assert.Throws<MoeCompressException>(() => ModelCheckpoint.Open(dir.Path));
        Assert.Equal(ErrorKind.InvalidConfig, ex.Kind);
        Assert.Contains("text_config.moe_intermediate_size=48", ex.Message);
        Assert.Contains("tensor 'model.language_model.layers.0.mlp.experts.gate_up_proj' should be [16, 96, 64] but it is [16, 64, 64]", ex.Message);
    }

    [Fact]
    public void DenseLayerWithExperts()
    {
        using var dir = new TempDirectory();
        SyntheticCheckpoint.Write("deepseek-v3", dir.Path);
        EditConfig(dir.Path, c => c["first_k_dense_replace"] = 2);
        var ex = Assert.Throws<MoeCompressException>(() => ModelCheckpoint.Open(dir.Path));
        Assert.Equal(ErrorKind.InvalidConfig, ex.Kind);
        Assert.Contains("makes layer 1 a dense layer but tensor 'model.layers.1.mlp.", ex.Message);
    }

    [Fact]
    public void MissingExpertTensor()
    {
        using var dir = new TempDirectory();
        SyntheticCheckpoint.Write("olmoe", dir.Path);
        // Rewrite the checkpoint without one expert tensor.
        const string dropped = "model.layers.2.mlp.experts.9.up_proj.weight";
        var copy = dir.Sub("without-one");
        using (var source = SafetensorsCheckpoint.Open(dir.Path))
        {
            var specs = source.Names.Where(n => n != dropped).Select(n => TensorSpec.From(source.GetInfo(n))).ToList();
            using var writer = CheckpointWriter.Create(copy, specs, new CheckpointWriterOptions { MaxShardBytes = 300_000, FlushToDisk = false });
            foreach (var spec in specs) writer.Write(spec.Name, source.GetBytes(spec.Name));
            writer.CopyAuxiliaryFiles(dir.Path);
            writer.Commit();
        }
        Assert.True(File.Exists(Path.Combine(copy, "config.json")));
        var ex = Assert.Throws<MoeCompressException>(() => ModelCheckpoint.Open(copy));
        Assert.Equal(ErrorKind.InvalidConfig, ex.Kind);
        Assert.Equal($"{Path.Combine(copy, "config.json")} says num_experts=16 and layer 2 is a MoE layer but tensor '{dropped}' is missing", ex.Message);
    }

    [Theory]
    [InlineData("mixtral", "model.layers.2.block_sparse_moe.gate.weight", 70, 0x7FC0u, "NaN", " (row 1, column 6)")]
    [InlineData("gpt-oss", "model.layers.1.mlp.router.bias", 3, 0xFF80u, "-Inf", "")]
    [InlineData("deepseek-v3", "model.layers.4.mlp.gate.e_score_correction_bias", 5, 0x7F800000u, "+Inf", "")]
    public void NonFiniteRouterValuesAreInvalidValues(string preset, string tensor, int element, uint bits, string what, string where)
    {
        using var dir = new TempDirectory();
        SyntheticCheckpoint.Write(preset, dir.Path);
        using (var ckpt = ModelCheckpoint.Open(dir.Path)) Assert.NotNull(ckpt);
        string file;
        long offset;
        int size;
        using (var st = SafetensorsCheckpoint.Open(dir.Path))
        {
            var f = st.GetFile(tensor);
            file = f.Path;
            size = st.GetInfo(tensor).DType.ItemSize();
            offset = f.FileOffsetOf(tensor) + (long)element * size;
        }
        using (var fs = new FileStream(file, FileMode.Open, FileAccess.Write))
        {
            fs.Position = offset;
            fs.Write(BitConverter.GetBytes(bits), 0, size);
        }
        var ex = Assert.Throws<MoeCompressException>(() => ModelCheckpoint.Open(dir.Path));
        Assert.Equal(ErrorKind.InvalidValues, ex.Kind);
        Assert.Equal($"tensor '{tensor}' holds {what} at element {element}{where}; router weights must be finite", ex.Message);
        // Without the value check the checkpoint opens.
        using var unchecked_ = ModelCheckpoint.Open(dir.Path, new ModelCheckpointOptions { ValidateRouterValues = false });
    }

    [Fact]
    public void MtpLayersPresentAreReported()
    {
        using var dir = new TempDirectory();
        SyntheticCheckpoint.Write("deepseek-v3", dir.Sub("v3"));
        SyntheticCheckpoint.Write("qwen3.5-moe", dir.Sub("q35"));
        using var v3 = ModelCheckpoint.Open(dir.Sub("v3"));
        Assert.Equal(new[] { 4 }, v3.MtpLayersPresent);
        Assert.Equal(1, v3.MoE.NumMtpLayers);
        using var q35 = ModelCheckpoint.Open(dir.Sub("q35"));
        Assert.Empty(q35.MtpLayersPresent);
        Assert.Equal(1, q35.MoE.NumMtpLayers);
        Assert.Equal("model.language_model.", q35.MoE.ModelPrefix);
    }
}
