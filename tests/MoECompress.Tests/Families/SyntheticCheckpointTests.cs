using System.Text.Json.Nodes;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Families;
using MoECompress.Formats.Safetensors;
using MoECompress.Formats.Synthetic;

namespace MoECompress.Tests.Families;

public class SyntheticCheckpointTests
{
    public static TheoryData<string> PresetNames => new(SyntheticCheckpoint.Presets);

    [Theory]
    [MemberData(nameof(PresetNames))]
    public void PresetWritesAndOpensAsAValidCheckpoint(string preset)
    {
        using var dir = new TempDirectory();
        var info = SyntheticCheckpoint.Write(preset, dir.Path, new SyntheticOptions { Seed = 7 });
        Assert.True(info.ShardCount > 1, "several shards with an index");
        Assert.True(File.Exists(Path.Combine(dir.Path, SafetensorsIndex.FileName)));
        foreach (var file in new[] { "config.json", "generation_config.json", "tokenizer_config.json" })
            Assert.True(File.Exists(Path.Combine(dir.Path, file)), file);

        using var ckpt = ModelCheckpoint.Open(dir.Path);
        Assert.Equal(info.Preset.Family, ckpt.Family.Name);
        Assert.Equal(info.Preset.FusedExperts || ckpt.Family.Name is "granitemoe" or "gpt-oss", ckpt.MoE.FusedExperts);
        Assert.Equal(info.TensorCount, ckpt.Tensors.Names.Count);
        Assert.Equal(info.Sizes.Experts, ckpt.MoE.NumExperts);
        Assert.Equal(info.Sizes.TopK, ckpt.MoE.TopK);
        Assert.Equal(info.Sizes.Layers, ckpt.MoE.NumLayers);
        Assert.Equal(info.Sizes.Hidden, ckpt.MoE.HiddenSize);
        foreach (var name in ckpt.Tensors.Names)
            Assert.NotEqual(TensorRole.Other, ckpt.Classify(name).Role);

        // Special token ids fit the scaled vocabulary.
        var generation = (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(dir.Path, "generation_config.json")))!;
        foreach (var key in new[] { "bos_token_id", "eos_token_id", "pad_token_id" })
        {
            var ids = generation[key] switch { JsonArray a => a.Select(n => n!.GetValue<int>()), JsonValue v when v.TryGetValue<int>(out var id) => [id], _ => [] };
            Assert.All(ids, id => Assert.InRange(id, 0, ckpt.MoE.VocabSize - 1));
        }
    }

    [Theory]
    [MemberData(nameof(PresetNames))]
    public void ReadRewriteReadIsByteIdentical(string preset)
    {
        using var dir = new TempDirectory();
        SyntheticCheckpoint.Write(preset, dir.Path);
        var copy = dir.Sub("rewritten");
        using (var source = SafetensorsCheckpoint.Open(dir.Path))
        {
            var layout = source.ShardFiles.Select(f => new ShardLayout(Path.GetFileName(f.Path),
                f.Tensors.OrderBy(t => t.DataBegin).Select(t => t.Name).ToList())).ToList();
            var specs = layout.SelectMany(l => l.TensorNames).Select(n => TensorSpec.From(source.GetInfo(n))).ToList();
            using var writer = CheckpointWriter.Create(copy, specs, new CheckpointWriterOptions { Layout = layout, FlushToDisk = false });
            foreach (var spec in specs) writer.Write(spec.Name, source.GetBytes(spec.Name));
            writer.WriteTextFile("config.json", File.ReadAllText(Path.Combine(dir.Path, "config.json")));
            writer.Commit();
        }
        using var a = SafetensorsCheckpoint.Open(dir.Path);
        using var b = SafetensorsCheckpoint.Open(copy);
        Assert.Equal(a.Names, b.Names);
        foreach (var name in a.Names)
        {
            Assert.Equal(a.GetInfo(name), b.GetInfo(name), TensorInfoComparer.Instance);
            Assert.True(a.GetBytes(name).SequenceEqual(b.GetBytes(name)), name);
        }
        var shardFiles = Directory.GetFiles(dir.Path, "*.safetensors").Select(Path.GetFileName).Order().ToList();
        Assert.Equal(shardFiles, Directory.GetFiles(copy, "*.safetensors").Select(Path.GetFileName).Order().ToList());
        foreach (var file in shardFiles.Append(SafetensorsIndex.FileName).Append("config.json"))
            Assert.True(File.ReadAllBytes(Path.Combine(dir.Path, file!)).AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(copy, file!))), file);
    }

    private sealed class TensorInfoComparer : IEqualityComparer<TensorInfo>
    {
        public static readonly TensorInfoComparer Instance = new();
        public bool Equals(TensorInfo? x, TensorInfo? y) => x!.Name == y!.Name && x.DType == y.DType && x.Shape.SequenceEqual(y.Shape)
            && x.DataBegin == y.DataBegin && x.DataEnd == y.DataEnd;
        public int GetHashCode(TensorInfo obj) => obj.Name.GetHashCode();
    }

    [Fact]
    public void SameSeedSameBytesOtherSeedOtherBytes()
    {
        using var dir = new TempDirectory();
        SyntheticCheckpoint.Write("olmoe", dir.Sub("a"), new SyntheticOptions { Seed = 5 });
        SyntheticCheckpoint.Write("olmoe", dir.Sub("b"), new SyntheticOptions { Seed = 5, ShardBytes = 1L << 30 });
        SyntheticCheckpoint.Write("olmoe", dir.Sub("c"), new SyntheticOptions { Seed = 6 });
        using var a = SafetensorsCheckpoint.Open(dir.Sub("a"));
        using var b = SafetensorsCheckpoint.Open(dir.Sub("b"));
        using var c = SafetensorsCheckpoint.Open(dir.Sub("c"));
        Assert.True(a.ShardFiles.Count > 1);
        Assert.Single(b.ShardFiles);
        Assert.True(File.Exists(Path.Combine(dir.Sub("b"), SafetensorsCheckpoint.SingleFileName)));
        const string name = "model.layers.1.mlp.experts.3.down_proj.weight";
        Assert.True(a.GetBytes(name).SequenceEqual(b.GetBytes(name)));
        Assert.False(a.GetBytes(name).SequenceEqual(c.GetBytes(name)));
    }

    [Fact]
    public void ValuesAreSmallNormalsAndNormsAreNearOne()
    {
        using var dir = new TempDirectory();
        SyntheticCheckpoint.Write("mixtral", dir.Path);
        using var ckpt = ModelCheckpoint.Open(dir.Path);
        using var w = ckpt.Tensors.ToTensor("model.embed_tokens.weight", TorchSharp.torch.ScalarType.Float32);
        Assert.InRange(w.mean().item<float>(), -0.002f, 0.002f);
        Assert.InRange(w.std().item<float>(), 0.018f, 0.022f);
        using var norm = ckpt.Tensors.ToTensor("model.norm.weight", TorchSharp.torch.ScalarType.Float32);
        Assert.InRange(norm.mean().item<float>(), 0.99f, 1.01f);
    }

    [Fact]
    public void OptionsScaleTheConfigConsistently()
    {
        var (_, sizes, config, tensors) = SyntheticCheckpoint.Plan("deepseek-v3", new SyntheticOptions { Experts = 12, Layers = 5, Hidden = 96 });
        var (family, moe) = FamilyRegistry.Read(config, "config.json");
        Assert.Equal("deepseek-v3", family.Name);
        Assert.Equal(12, moe.NumExperts);
        Assert.Equal(5, moe.NumLayers);
        Assert.Equal(96, moe.HiddenSize);
        Assert.Equal(0, moe.NumExperts % moe.NumGroups);   // 4 groups of 3
        Assert.True(moe.TopKGroups * (moe.NumExperts / moe.NumGroups) >= moe.TopK);
        Assert.Equal(4, sizes.TopK);
        Assert.False(config.ContainsKey("quantization_config"));
        Assert.Contains(tensors, t => t.Name == "model.layers.5.eh_proj.weight");
        Assert.Contains(tensors, t => t.Name == "model.layers.4.mlp.experts.11.down_proj.weight");
        Assert.DoesNotContain(tensors, t => t.Name.StartsWith("model.layers.4.mlp.experts.12.", StringComparison.Ordinal));
        Assert.Equal(SafetensorsDType.F32, tensors.Single(t => t.Name == "model.layers.2.mlp.gate.e_score_correction_bias").DType);
    }

    [Fact]
    public void TargetBytesScalesHiddenAndIntermediate()
    {
        var small = SyntheticCheckpoint.Plan("mixtral");
        var big = SyntheticCheckpoint.Plan("mixtral", new SyntheticOptions { TargetBytes = 40_000_000 });
        long bytes = big.Tensors.Sum(t => t.ByteCount);
        Assert.InRange(bytes, 40_000_000, 60_000_000);
        Assert.True(big.Sizes.Hidden > small.Sizes.Hidden);
        Assert.Equal(big.Sizes.Hidden * small.Sizes.ExpertIntermediate, big.Sizes.ExpertIntermediate * small.Sizes.Hidden);
        Assert.Equal(small.Tensors.Count, big.Tensors.Count);
    }

    [Fact]
    public void UnknownPresetAndBadSizesAreUsageErrors()
    {
        Assert.Equal(ErrorKind.Usage, Assert.Throws<MoeCompressException>(() => SyntheticCheckpoint.Plan("llama")).Kind);
        Assert.Equal(ErrorKind.Usage, Assert.Throws<MoeCompressException>(() =>
            SyntheticCheckpoint.Plan("mixtral", new SyntheticOptions { Hidden = 48 })).Kind);
        Assert.Equal("granitemoe", SyntheticPresetCatalog.Get("GraniteMoE").Name);
    }

    [Fact]
    public void ExistingDestinationIsRefusedUnlessOverwrite()
    {
        using var dir = new TempDirectory();
        SyntheticCheckpoint.Write("phimoe", dir.Path);
        var ex = Assert.Throws<MoeCompressException>(() => SyntheticCheckpoint.Write("phimoe", dir.Path));
        Assert.Equal(ErrorKind.Io, ex.Kind);
        SyntheticCheckpoint.Write("phimoe", dir.Path, new SyntheticOptions { Overwrite = true, Seed = 2 });
    }

    /// <summary>The synthetic names are real names: each one occurs in the real checkpoint's index.</summary>
    [Theory]
    [InlineData("mixtral", "Mixtral-8x7B-v0.1/model.safetensors.index.json")]
    [InlineData("qwen3.5-moe", "Qwen3.5-18B-REAP-A3B-Coding/model.safetensors.index.json")]
    public void SyntheticNamesOccurInTheRealIndex(string preset, string index)
    {
        var real = FamilyTestData.IndexNames(index).ToHashSet();
        var plan = SyntheticCheckpoint.Plan(preset);
        Assert.All(plan.Tensors, t => Assert.Contains(t.Name, real));
    }

    [Fact]
    public void Qwen36NamesOccurInTheRealCsv()
    {
        var real = FamilyTestData.Qwen36Csv().ToDictionary(i => i.Name);
        var plan = SyntheticCheckpoint.Plan("qwen3.6-moe");
        Assert.All(plan.Tensors, t =>
        {
            Assert.True(real.TryGetValue(t.Name, out var r), t.Name);
            Assert.Equal(r!.Shape.Length == 0 ? t.Shape.Length : r.Shape.Length, t.Shape.Length);
            Assert.Equal(r.DType, t.DType);
        });
        Assert.Contains(plan.Tensors, t => t.Name.StartsWith("mtp.", StringComparison.Ordinal));
        Assert.Contains(plan.Tensors, t => t.Name.StartsWith("model.visual.", StringComparison.Ordinal));
    }

    /// <summary>
    /// Qwen3-Next (no index at hand): its own projection names and shapes — fused in_proj_qkvz [2·nk·dk + 2·nv·dv, H]
    /// and in_proj_ba [2·nv, H] on the linear layers, q_proj with the gate rows on every 4th layer — and one MTP layer.
    /// </summary>
    [Fact]
    public void Qwen3NextPlanHasFusedDeltaNetProjectionsAndAnMtpLayer()
    {
        var plan = SyntheticCheckpoint.Plan("qwen3-next");
        var shapes = plan.Tensors.ToDictionary(t => t.Name, t => t.Shape);
        var c = plan.Config;
        int h = (int)c["hidden_size"]!, nk = (int)c["linear_num_key_heads"]!, nv = (int)c["linear_num_value_heads"]!;
        int dk = (int)c["linear_key_head_dim"]!, dv = (int)c["linear_value_head_dim"]!;
        int heads = (int)c["num_attention_heads"]!, hd = (int)c["head_dim"]!;
        foreach (var l in new[] { 0, 1, 2 })
        {
            Assert.Equal(new long[] { 2 * nk * dk + 2 * nv * dv, h }, shapes[$"model.layers.{l}.linear_attn.in_proj_qkvz.weight"]);
            Assert.Equal(new long[] { 2 * nv, h }, shapes[$"model.layers.{l}.linear_attn.in_proj_ba.weight"]);
        }
        Assert.Equal(new long[] { 2 * heads * hd, h }, shapes["model.layers.3.self_attn.q_proj.weight"]);
        Assert.DoesNotContain(shapes.Keys, n => n.Contains("in_proj_qkv.", StringComparison.Ordinal) || n.Contains("linear_attn", StringComparison.Ordinal) && n.Contains("layers.3.", StringComparison.Ordinal));
        Assert.Contains("mtp.layers.0.mlp.gate.weight", shapes.Keys);
        Assert.Contains("mtp.fc.weight", shapes.Keys);
    }
}

public class SyntheticCheckpointCancellationTests
{
    [Fact]
    public void CancelledWriteLeavesNoDestination()
    {
        using var dir = new TempDirectory();
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        Assert.ThrowsAny<OperationCanceledException>(() => SyntheticCheckpoint.Write("mixtral", dir.Path, null, null, cts.Token));
        Assert.False(Directory.Exists(dir.Path));
        Assert.Empty(Directory.GetDirectories(dir.Root));
    }
}
