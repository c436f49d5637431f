using System.Text.Json.Nodes;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Families;

namespace MoECompress.Tests.Families;

public class FamilyDetectionTests
{
    private static (IMoEFamily Family, MoEConfig MoE) Read(string relative)
    {
        var config = FamilyTestData.LoadConfig(relative);
        return FamilyRegistry.Read(config, FamilyTestData.ConfigPath(relative));
    }

    [Theory]
    [InlineData("Mixtral-8x7B-v0.1/config.json")]
    [InlineData("presets-from-mlc-llm/Mixtral-8x7B-v0.1.config.json")]
    public void Mixtral(string path)
    {
        var (family, moe) = Read(path);
        Assert.Equal("mixtral", family.Name);
        Assert.Equal("MixtralForCausalLM", moe.Architecture);
        Assert.Equal(8, moe.NumExperts);
        Assert.Equal(2, moe.TopK);
        Assert.Equal(32, moe.NumLayers);
        Assert.Equal(32, moe.NumMoELayers);
        Assert.Equal(4096, moe.HiddenSize);
        Assert.Equal(14336, moe.ExpertIntermediateSize);
        Assert.Equal(32000, moe.VocabSize);
        Assert.Equal(new[] { "num_local_experts" }, moe.ExpertCountKeys);
        Assert.Equal("num_experts_per_tok", moe.TopKKey);
        Assert.Equal(0, moe.NumSharedExperts);
        Assert.Equal(RouterScoring.Softmax, moe.Scoring);
        Assert.True(moe.NormTopKProb);
        Assert.False(moe.TieWordEmbeddings);
        Assert.False(moe.FusedExperts);
    }

    [Fact]
    public void DeepSeekR1()
    {
        var (family, moe) = Read("DeepSeek-R1/config.json");
        Assert.Equal("deepseek-v3", family.Name);
        Assert.Equal(256, moe.NumExperts);
        Assert.Equal(8, moe.TopK);
        Assert.Equal(61, moe.NumLayers);
        Assert.Equal(8, moe.NumGroups);
        Assert.Equal(4, moe.TopKGroups);
        Assert.Equal(new[] { false, false, false, true }, moe.IsMoELayer.Take(4));
        Assert.Equal(58, moe.NumMoELayers);
        Assert.Equal(1, moe.NumMtpLayers);
        Assert.True(moe.MtpLayersAreMoE);
        Assert.True(moe.HasRoutedExperts(61));
        Assert.False(moe.HasRoutedExperts(62));
        Assert.Equal(RouterScoring.Sigmoid, moe.Scoring);
        Assert.Equal(2.5, moe.RoutedScalingFactor);
        Assert.True(moe.NormTopKProb);
        Assert.True(moe.HasCorrectionBias);
        Assert.Equal(1, moe.NumSharedExperts);
        Assert.Equal(2048, moe.SharedExpertIntermediateSize);
        Assert.Equal(2048, moe.ExpertIntermediateSize);
        Assert.Equal(18432, moe.DenseIntermediateSize);
        Assert.Equal(7168, moe.HiddenSize);
        Assert.Equal(129280, moe.VocabSize);
        Assert.Equal(new[] { "n_routed_experts" }, moe.ExpertCountKeys);
        Assert.Equal("model.layers.3.mlp.gate.e_score_correction_bias", family.CorrectionBiasName(3, moe));
        Assert.Equal("model.layers.61.mlp.gate.weight", family.RouterWeightName(61, moe));
    }

    [Fact]
    public void Qwen35Reap()
    {
        var (family, moe) = Read("Qwen3.5-18B-REAP-A3B-Coding/config.json");
        Assert.Equal("qwen3.5-moe", family.Name);
        Assert.Equal("Qwen3_5MoeForConditionalGeneration", moe.Architecture);
        Assert.Equal(128, moe.NumExperts);
        Assert.Equal(8, moe.TopK);
        Assert.Equal(40, moe.NumLayers);
        Assert.Equal(40, moe.NumMoELayers);
        Assert.Equal(512, moe.ExpertIntermediateSize);
        Assert.Equal(1, moe.NumSharedExperts);
        Assert.Equal(512, moe.SharedExpertIntermediateSize);
        Assert.True(moe.HasSharedExpertGate);
        Assert.Equal(1, moe.NumMtpLayers);
        Assert.Equal(2048, moe.HiddenSize);
        Assert.Equal(248320, moe.VocabSize);
        Assert.Equal(new[] { "num_experts" }, moe.ExpertCountKeys);
        Assert.Equal("num_experts_per_tok", moe.TopKKey);
        Assert.Equal("model.language_model.", moe.ModelPrefix);
    }

    [Fact]
    public void Qwen36NestedTextConfig()
    {
        var (family, moe) = Read("Qwen3.6-35B-A3B/3.6.config.json");
        Assert.Equal("qwen3.5-moe", family.Name);
        Assert.Equal(256, moe.NumExperts);
        Assert.Equal(8, moe.TopK);
        Assert.Equal(40, moe.NumLayers);
        Assert.Equal(2048, moe.HiddenSize);
        Assert.Equal(1, moe.NumMtpLayers);
        Assert.Equal(new[] { "text_config.num_experts" }, moe.ExpertCountKeys);
        Assert.Equal("text_config.num_experts_per_tok", moe.TopKKey);
        Assert.Equal("text_config.", moe.ConfigSectionPrefix);
        var root = FamilyTestData.LoadConfig("Qwen3.6-35B-A3B/3.6.config.json");
        Assert.Equal(256, (int)ConfigKeys.Get(root, moe.ExpertCountKeys[0])!);
    }

    [Fact]
    public void Qwen15Moe()
    {
        var (family, moe) = Read("presets-from-mlc-llm/Qwen1.5-MoE-A2.7B.config.json");
        Assert.Equal("qwen2-moe", family.Name);
        Assert.Equal(60, moe.NumExperts);
        Assert.Equal(4, moe.TopK);
        Assert.Equal(24, moe.NumLayers);
        Assert.Equal(24, moe.NumMoELayers);
        Assert.Equal(1408, moe.ExpertIntermediateSize);
        Assert.Equal(5632, moe.SharedExpertIntermediateSize);
        Assert.True(moe.HasSharedExpertGate);
        Assert.False(moe.NormTopKProb);
        Assert.Equal(0, moe.DenseIntermediateSize);
    }

    [Fact]
    public void DeepSeekV2Lite()
    {
        var (family, moe) = Read("presets-from-mlc-llm/DeepSeek-V2-Lite.config.json");
        Assert.Equal("deepseek-v2", family.Name);
        Assert.Equal(64, moe.NumExperts);
        Assert.Equal(6, moe.TopK);
        Assert.Equal(27, moe.NumLayers);
        Assert.Equal(26, moe.NumMoELayers);
        Assert.False(moe.IsMoELayer[0]);
        Assert.Equal(2, moe.NumSharedExperts);
        Assert.Equal(2816, moe.SharedExpertIntermediateSize);
        Assert.Equal(10944, moe.DenseIntermediateSize);
        Assert.Equal(1, moe.NumGroups);
        Assert.Equal(RouterScoring.Softmax, moe.Scoring);
        Assert.False(moe.HasCorrectionBias);
        Assert.Null(family.CorrectionBiasName(1, moe));
    }

    [Fact]
    public void DeepSeekMoE16b()
    {
        var (family, moe) = Read("presets-from-mlc-llm/deepseek-moe-16b.config.json");
        Assert.Equal("deepseek-moe", family.Name);
        Assert.Equal(64, moe.NumExperts);
        Assert.Equal(6, moe.TopK);
        Assert.Equal(28, moe.NumLayers);
        Assert.Equal(27, moe.NumMoELayers);
        Assert.Equal(2, moe.NumSharedExperts);
    }

    [Fact]
    public void MiniCpmMoE()
    {
        var (family, moe) = Read("presets-from-mlc-llm/MiniCPM-MoE-8x2B.config.json");
        Assert.Equal("minicpm-moe", family.Name);
        Assert.Equal(8, moe.NumExperts);
        Assert.Equal(2, moe.TopK);
        Assert.Equal(40, moe.NumLayers);
        Assert.Equal(5760, moe.ExpertIntermediateSize);
        Assert.True(moe.TieWordEmbeddings);
    }

    [Theory]
    [InlineData("deepseek-native-inference-configs/config_16B.json")]
    [InlineData("deepseek-native-inference-configs/config_671B.json")]
    public void NativeDeepSeekConfigsAreNotHuggingFaceConfigs(string path)
    {
        var ex = Assert.Throws<MoeCompressException>(() => Read(path));
        Assert.Equal(ErrorKind.InvalidConfig, ex.Kind);
        Assert.Contains(Path.GetFileName(path), ex.Message);
        Assert.Contains("DeepseekV3ForCausalLM", ex.Message);
    }

    [Fact]
    public void UnknownArchitectureListsSupportedOnes()
    {
        var config = new JsonObject { ["architectures"] = new JsonArray("LlamaForCausalLM"), ["model_type"] = "llama" };
        var ex = Assert.Throws<MoeCompressException>(() => FamilyRegistry.Detect(config, "/x/config.json"));
        Assert.Equal(ErrorKind.InvalidConfig, ex.Kind);
        Assert.Contains("/x/config.json", ex.Message);
        Assert.Contains("'LlamaForCausalLM'", ex.Message);
        foreach (var family in FamilyRegistry.All)
            foreach (var arch in family.Architectures)
                Assert.Contains(arch, ex.Message);
    }

    [Fact]
    public void DenseMiniCpmIsNotClaimed()
    {
        var config = FamilyTestData.LoadConfig("presets-from-mlc-llm/MiniCPM-MoE-8x2B.config.json");
        config.Remove("num_experts");
        var ex = Assert.Throws<MoeCompressException>(() => FamilyRegistry.Detect(config, "config.json"));
        Assert.Equal(ErrorKind.InvalidConfig, ex.Kind);
    }

    [Fact]
    public void MissingExpertCountNamesTheKey()
    {
        var config = FamilyTestData.LoadConfig("Mixtral-8x7B-v0.1/config.json");
        config.Remove("num_local_experts");
        var ex = Assert.Throws<MoeCompressException>(() => FamilyRegistry.Read(config, "/m/config.json"));
        Assert.Equal(ErrorKind.InvalidConfig, ex.Kind);
        Assert.Equal("/m/config.json: key 'num_local_experts' is missing", ex.Message);
    }

    [Fact]
    public void TopKAboveExpertsIsRejected()
    {
        var config = FamilyTestData.LoadConfig("Qwen3.6-35B-A3B/3.6.config.json");
        ConfigKeys.Set(config, "text_config.num_experts_per_tok", 300);
        var ex = Assert.Throws<MoeCompressException>(() => FamilyRegistry.Read(config, "config.json"));
        Assert.Contains("text_config.num_experts_per_tok", ex.Message);
        Assert.Contains("text_config.num_experts = 256", ex.Message);
    }

    [Fact]
    public void GroupsMustDivideExperts()
    {
        var config = FamilyTestData.LoadConfig("DeepSeek-R1/config.json");
        config["n_group"] = 7;
        var ex = Assert.Throws<MoeCompressException>(() => FamilyRegistry.Read(config, "config.json"));
        Assert.Contains("'n_group'", ex.Message);
    }

    [Fact]
    public void NonIntegerValueIsReported()
    {
        var config = FamilyTestData.LoadConfig("Mixtral-8x7B-v0.1/config.json");
        config["num_local_experts"] = "eight";
        var ex = Assert.Throws<MoeCompressException>(() => FamilyRegistry.Read(config, "config.json"));
        Assert.Contains("'num_local_experts' must be an integer", ex.Message);
    }

    [Fact]
    public void Qwen2SparseStepAndMlpOnlyLayers()
    {
        var config = FamilyTestData.LoadConfig("presets-from-mlc-llm/Qwen1.5-MoE-A2.7B.config.json");
        config["decoder_sparse_step"] = 2;
        config["mlp_only_layers"] = new JsonArray(3);
        var (_, moe) = FamilyRegistry.Read(config, "config.json");
        // MoE where (l+1) % 2 == 0 and l not in [3]: 1, 5, 7, ...
        Assert.Equal(new[] { false, true, false, false, false, true }, moe.IsMoELayer.Take(6));
        Assert.Equal(5632, moe.DenseIntermediateSize);
    }

    [Fact]
    public void EveryFamilyHasAUniqueNameAndArchitectures()
    {
        Assert.Equal(FamilyRegistry.All.Count, FamilyRegistry.All.Select(f => f.Name).Distinct().Count());
        var archs = FamilyRegistry.All.SelectMany(f => f.Architectures).ToList();
        Assert.Equal(archs.Count, archs.Distinct().Count());
        Assert.Contains("GptOssForCausalLM", FamilyRegistry.SupportedArchitectures);
        Assert.Same(FamilyRegistry.All[0], FamilyRegistry.Get("MIXTRAL"));
    }
}
