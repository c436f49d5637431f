using System.Text.Json.Nodes;
using MoECompress.Compression.Model;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Families;
using MoECompress.Formats.Synthetic;

namespace MoECompress.Tests.Model;

public class EngineConfigTests
{
    private static EngineConfig Read(string reference, Action<JsonObject>? edit = null)
    {
        var config = ReferenceConfigs.Load(reference);
        edit?.Invoke(config);
        var (_, moe) = FamilyRegistry.Read(config, reference);
        return EngineConfig.FromConfig(config, moe, reference);
    }

    private static double Mscale(double factor, double m) => 0.1 * m * Math.Log(factor) + 1;

    [Fact]
    public void DeepSeekR1UsesNoauxRoutingMlaAndYarnSoftmaxScale()
    {
        var c = Read("DeepSeek-R1");
        Assert.Equal("deepseek_v3", c.ModelType);
        Assert.Equal(RouterScoring.Sigmoid, c.Router.Scoring);
        Assert.Equal(RouterGroupSelection.SumOfTopTwoPerGroup, c.Router.GroupSelection);
        Assert.Equal((8, 4, 8), (c.Router.NumGroups, c.Router.TopKGroups, c.Router.TopK));
        Assert.True(c.Router.UseCorrectionBias);
        Assert.True(c.Router.Normalize);
        Assert.Equal(2.5, c.Router.ScalingFactor);
        Assert.Equal(new MlaSpec(1536, 512, 128, 64, 128), c.Mla);
        Assert.Equal(64, c.RotaryDim);
        Assert.True(c.RopeInterleaved);
        Assert.Equal(RopeType.Yarn, c.RopeScaling.Type);
        Assert.Equal(4096, c.RopeScaling.OriginalMaxPositionEmbeddings);
        Assert.Equal(Math.Pow(Mscale(40, 1.0), 2) / Math.Sqrt(192), c.AttentionScale, 12);
        Assert.Equal(1.0, c.CreateRotaryEmbedding().AttentionFactor, 12);
        Assert.Equal(new[] { 128, 128 }, c.Fp8BlockSize);
        Assert.Equal(18432, c.DenseIntermediateSize);
    }

    [Fact]
    public void DeepSeekV2LiteUsesGreedySoftmaxWithoutQueryLora()
    {
        var c = Read("DeepSeek-V2-Lite");
        Assert.Equal(RouterScoring.Softmax, c.Router.Scoring);
        Assert.Equal(RouterGroupSelection.None, c.Router.GroupSelection);
        Assert.False(c.Router.Normalize);
        Assert.False(c.Router.UseCorrectionBias);
        Assert.Equal(1.0, c.Router.ScalingFactor);
        Assert.Null(c.Mla!.QLoraRank);
        Assert.Equal(Math.Pow(Mscale(40, 0.707), 2) / Math.Sqrt(192), c.AttentionScale, 12);
    }

    [Fact]
    public void DeepSeekV2GroupLimitedGreedyScalesOnlyUnnormalisedWeights()
    {
        var c = Read("DeepSeek-V2-Lite", j =>
        {
            j["topk_method"] = "group_limited_greedy";
            j["n_group"] = 8;
            j["topk_group"] = 3;
            j["routed_scaling_factor"] = 16.0;
        });
        Assert.Equal(RouterGroupSelection.MaxPerGroup, c.Router.GroupSelection);
        Assert.Equal((8, 3), (c.Router.NumGroups, c.Router.TopKGroups));
        Assert.Equal(16.0, c.Router.ScalingFactor);

        var normalised = Read("DeepSeek-V2-Lite", j =>
        {
            j["norm_topk_prob"] = true;
            j["routed_scaling_factor"] = 16.0;
        });
        Assert.True(normalised.Router.Normalize);
        Assert.Equal(1.0, normalised.Router.ScalingFactor);
    }

    [Fact]
    public void MixtralAlwaysRenormalisesAndHasNoSlidingWindow()
    {
        var c = Read("Mixtral-8x7B-v0.1");
        Assert.True(c.Router.Normalize);
        Assert.Equal(0.0, c.Router.NormalizeEpsilon);
        Assert.Equal((32, 8, 128), (c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim));
        Assert.Equal(1e6, c.RopeTheta);
        Assert.Null(c.Mla);
        Assert.DoesNotContain(true, c.SlidingWindowLayers);
        Assert.Equal(1 / Math.Sqrt(128), c.AttentionScale, 12);

        var windowed = Read("Mixtral-8x7B-v0.1", j => j["sliding_window"] = 4096);
        Assert.Equal(4096, windowed.SlidingWindow);
        Assert.All(windowed.SlidingWindowLayers, Assert.True);
    }

    [Fact]
    public void QwenAndOlmoeFollowNormTopKProb()
    {
        var qwen15 = Read("Qwen1.5-MoE-A2.7B");
        Assert.False(qwen15.Router.Normalize);
        Assert.DoesNotContain(true, qwen15.SlidingWindowLayers);
        var qwen3 = Read("Qwen3-30B-A3B");
        Assert.True(qwen3.Router.Normalize);
        Assert.Equal(128, qwen3.HeadDim);
        var olmoe = Read("OLMoE-1B-7B-0924");
        Assert.False(olmoe.Router.Normalize);
        Assert.Equal(1e-5, olmoe.RmsNormEps);
        var windowed = Read("Qwen1.5-MoE-A2.7B", j => j["use_sliding_window"] = true);
        Assert.Equal(Enumerable.Range(0, 24).Select(l => l >= 21), windowed.SlidingWindowLayers);
    }

    [Fact]
    public void DeepSeekMoE16bIsStandardAttention()
    {
        var config = (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(Families.FamilyTestData.ConfigsDir, "presets-from-mlc-llm", "deepseek-moe-16b.config.json")))!;
        var (_, moe) = FamilyRegistry.Read(config, "deepseek-moe-16b");
        var c = EngineConfig.FromConfig(config, moe);
        Assert.Equal("deepseek", c.ModelType);
        Assert.Null(c.Mla);
        Assert.Equal(RouterGroupSelection.None, c.Router.GroupSelection);
        Assert.False(c.Router.Normalize);
    }

    [Fact]
    public void Qwen3NextHasEveryFourthLayerFullAttentionAndQuarterRotary()
    {
        var c = Read("Qwen3-Next-80B-A3B-Instruct");
        Assert.Equal("qwen3_next", c.ModelType);
        Assert.Equal(Enumerable.Range(0, 48).Select(l => (l + 1) % 4 != 0), c.LinearAttentionLayers);
        Assert.Equal(new LinearAttentionSpec(16, 32, 128, 128, 4), c.LinearAttention);
        Assert.Equal(64, c.RotaryDim);
        Assert.Equal(1e7, c.RopeTheta);
        Assert.True(c.ZeroCenteredNorms);
        Assert.True(c.AttentionOutputGate);
        Assert.True(c.Router.Normalize);
        Assert.Equal(1 / Math.Sqrt(256), c.AttentionScale, 12);
        Assert.Equal(64, Read("Qwen3-Next-80B-A3B-Instruct", j => j.Remove("partial_rotary_factor")).RotaryDim);
    }

    [Fact]
    public void Qwen36ReadsItsLanguageModelFromTextConfig()
    {
        var c = Read("Qwen3.6-35B-A3B");
        Assert.Equal("qwen3_next", c.ModelType);
        Assert.Equal((16, 2, 256, 2048), (c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim, c.HiddenSize));
        Assert.Equal(Enumerable.Range(0, 40).Select(l => l % 4 != 3), c.LinearAttentionLayers);
        Assert.Equal(64, c.RotaryDim);
        Assert.Equal(1e7, c.RopeTheta);
        Assert.Equal(RopeType.Default, c.RopeScaling.Type);
        var bad = Assert.Throws<MoeCompressException>(() => Read("Qwen3.6-35B-A3B", j => j["text_config"]!["layer_types"]![2] = "sliding_attention"));
        Assert.Contains("text_config.layer_types[2]", bad.Message);
        var ratio = Assert.Throws<MoeCompressException>(() => Read("Qwen3.5-18B-REAP-A3B-Coding", j => j["linear_num_value_heads"] = 24));
        Assert.Contains("linear_num_value_heads", ratio.Message);
    }

    [Fact]
    public void BadAttentionKeysAreNamed()
    {
        var ex = Assert.Throws<MoeCompressException>(() => Read("Mixtral-8x7B-v0.1", j => j["num_key_value_heads"] = 5));
        Assert.Equal(ErrorKind.InvalidConfig, ex.Kind);
        Assert.Contains("num_key_value_heads", ex.Message);
        var rope = Assert.Throws<MoeCompressException>(() => Read("Mixtral-8x7B-v0.1", j => j["rope_scaling"] = new JsonObject { ["rope_type"] = "mystery" }));
        Assert.Contains("mystery", rope.Message);
    }
}
