using MoECompress.Formats.Errors;
using MoECompress.Formats.Families;
using MoECompress.Formats.Synthetic;

namespace MoECompress.Tests.Families;

public class TensorClassificationTests
{
    private static (IMoEFamily Family, MoEConfig MoE) Read(string relative) =>
        FamilyRegistry.Read(FamilyTestData.LoadConfig(relative), FamilyTestData.ConfigPath(relative));

    [Fact]
    public void MixtralIndexClassifiesEveryTensor()
    {
        var (family, moe) = Read("Mixtral-8x7B-v0.1/config.json");
        var names = FamilyTestData.IndexNames("Mixtral-8x7B-v0.1/model.safetensors.index.json");
        Assert.Equal(995, names.Count);
        var roles = names.ToDictionary(n => n, n => family.Classify(n, moe));
        Assert.DoesNotContain(roles, kv => kv.Value.Role == TensorRole.Other);
        Assert.Equal(32 * 8 * 3, roles.Values.Count(r => r.Role == TensorRole.RoutedExpert));
        Assert.Equal(32, roles.Values.Count(r => r.Role == TensorRole.RouterWeight));
        Assert.Equal(32 * 4, roles.Values.Count(r => r.Role == TensorRole.Attention));
        Assert.Equal(32 * 2 + 1, roles.Values.Count(r => r.Role == TensorRole.Norm));

        Assert.Equal(new TensorRoleInfo(TensorRole.RoutedExpert, 5, 3, ExpertProjection.Gate), roles["model.layers.5.block_sparse_moe.experts.3.w1.weight"]);
        Assert.Equal(new TensorRoleInfo(TensorRole.RoutedExpert, 31, 7, ExpertProjection.Down), roles["model.layers.31.block_sparse_moe.experts.7.w2.weight"]);
        Assert.Equal(new TensorRoleInfo(TensorRole.RoutedExpert, 0, 0, ExpertProjection.Up), roles["model.layers.0.block_sparse_moe.experts.0.w3.weight"]);
        Assert.Equal(new TensorRoleInfo(TensorRole.RouterWeight, 12), roles["model.layers.12.block_sparse_moe.gate.weight"]);
        Assert.Equal(new TensorRoleInfo(TensorRole.Attention, 9), roles["model.layers.9.self_attn.k_proj.weight"]);
        Assert.Equal(new TensorRoleInfo(TensorRole.Norm, 4), roles["model.layers.4.post_attention_layernorm.weight"]);
        Assert.Equal(new TensorRoleInfo(TensorRole.Embedding), roles["model.embed_tokens.weight"]);
        Assert.Equal(new TensorRoleInfo(TensorRole.LmHead), roles["lm_head.weight"]);
        Assert.Equal(new TensorRoleInfo(TensorRole.Norm), roles["model.norm.weight"]);

        // The family's generated names are exactly the index's expert and router names.
        var generated = new HashSet<string>();
        for (int l = 0; l < moe.NumLayers; l++)
        {
            generated.Add(family.RouterWeightName(l, moe));
            for (int e = 0; e < moe.NumExperts; e++)
                foreach (var p in new[] { ExpertProjection.Gate, ExpertProjection.Up, ExpertProjection.Down })
                {
                    var r = family.ExpertTensor(l, e, p, moe);
                    Assert.Equal(ExpertLayout.PerExpert, r.Layout);
                    generated.Add(r.TensorName);
                }
        }
        Assert.Equal(roles.Where(kv => kv.Value.Role is TensorRole.RoutedExpert or TensorRole.RouterWeight).Select(kv => kv.Key).ToHashSet(), generated);
    }

    [Fact]
    public void Qwen35ReapIndexClassifiesEveryTensor()
    {
        var (family, moe) = Read("Qwen3.5-18B-REAP-A3B-Coding/config.json");
        var names = FamilyTestData.IndexNames("Qwen3.5-18B-REAP-A3B-Coding/model.safetensors.index.json");
        Assert.Equal(15973, names.Count);
        moe = family.ResolveLayout(moe, names);
        Assert.False(moe.FusedExperts);
        Assert.Equal("model.language_model.", moe.ModelPrefix);
        var roles = names.ToDictionary(n => n, n => family.Classify(n, moe));
        Assert.DoesNotContain(roles, kv => kv.Value.Role == TensorRole.Other);
        Assert.Equal(40 * 128 * 3, roles.Values.Count(r => r.Role == TensorRole.RoutedExpert));
        Assert.Equal(127, roles.Values.Where(r => r.Role == TensorRole.RoutedExpert).Max(r => r.Expert));
        Assert.Equal(40 * 3, roles.Values.Count(r => r.Role == TensorRole.SharedExpert));
        Assert.Equal(40, roles.Values.Count(r => r.Role == TensorRole.SharedExpertGate));
        Assert.DoesNotContain(roles.Values, r => r.InMtp);

        const string p = "model.language_model.layers.";
        Assert.Equal(new TensorRoleInfo(TensorRole.Attention, 0), roles[p + "0.linear_attn.A_log"]);
        Assert.Equal(new TensorRoleInfo(TensorRole.Attention, 2), roles[p + "2.linear_attn.conv1d.weight"]);
        Assert.Equal(new TensorRoleInfo(TensorRole.Norm, 0), roles[p + "0.linear_attn.norm.weight"]);
        Assert.Equal(new TensorRoleInfo(TensorRole.Norm, 3), roles[p + "3.self_attn.q_norm.weight"]);
        Assert.Equal(new TensorRoleInfo(TensorRole.Attention, 3), roles[p + "3.self_attn.o_proj.weight"]);
        Assert.Equal(new TensorRoleInfo(TensorRole.SharedExpertGate, 17), roles[p + "17.mlp.shared_expert_gate.weight"]);
        Assert.Equal(new TensorRoleInfo(TensorRole.SharedExpert, 17, null, ExpertProjection.Down), roles[p + "17.mlp.shared_expert.down_proj.weight"]);
        Assert.Equal(new TensorRoleInfo(TensorRole.RoutedExpert, 39, 127, ExpertProjection.Up), roles[p + "39.mlp.experts.127.up_proj.weight"]);
        Assert.Equal(new TensorRoleInfo(TensorRole.RouterWeight, 20), roles[p + "20.mlp.gate.weight"]);
        Assert.Equal(new TensorRoleInfo(TensorRole.Embedding), roles["model.language_model.embed_tokens.weight"]);
        Assert.Equal(new TensorRoleInfo(TensorRole.Norm), roles["model.language_model.norm.weight"]);

        Assert.Equal(p + "20.mlp.gate.weight", family.RouterWeightName(20, moe));
        for (int l = 0; l < moe.NumLayers; l += 13)
            for (int e = 0; e < moe.NumExperts; e += 31)
                foreach (var proj in new[] { ExpertProjection.Gate, ExpertProjection.Up, ExpertProjection.Down })
                    Assert.Contains(family.ExpertTensor(l, e, proj, moe).TensorName, roles.Keys);
    }

    [Fact]
    public void Qwen36FusedCsvClassifiesEveryTensorAndValidates()
    {
        var (family, moe) = Read("Qwen3.6-35B-A3B/3.6.config.json");
        var infos = FamilyTestData.Qwen36Csv();
        var names = infos.Select(i => i.Name).ToList();
        moe = family.ResolveLayout(moe, names);
        Assert.True(moe.FusedExperts);
        var roles = names.ToDictionary(n => n, n => family.Classify(n, moe));
        Assert.DoesNotContain(roles, kv => kv.Value.Role == TensorRole.Other);

        const string p = "model.language_model.layers.";
        Assert.Equal(new TensorRoleInfo(TensorRole.RoutedExpert, 0, null, ExpertProjection.GateUp, Fused: true), roles[p + "0.mlp.experts.gate_up_proj"]);
        Assert.Equal(new TensorRoleInfo(TensorRole.RoutedExpert, 7, null, ExpertProjection.Down, Fused: true), roles[p + "7.mlp.experts.down_proj"]);
        Assert.Equal(new TensorRoleInfo(TensorRole.RoutedExpert, 40, null, ExpertProjection.GateUp, Fused: true, InMtp: true), roles["mtp.layers.0.mlp.experts.gate_up_proj"]);
        Assert.Equal(new TensorRoleInfo(TensorRole.RouterWeight, 40, InMtp: true), roles["mtp.layers.0.mlp.gate.weight"]);
        Assert.Equal(new TensorRoleInfo(TensorRole.Attention, 40, InMtp: true), roles["mtp.layers.0.self_attn.q_proj.weight"]);
        Assert.Equal(new TensorRoleInfo(TensorRole.Mtp, 40, InMtp: true), roles["mtp.fc.weight"]);
        Assert.Equal(new TensorRoleInfo(TensorRole.Norm, 40, InMtp: true), roles["mtp.pre_fc_norm_hidden.weight"]);
        Assert.Equal(new TensorRoleInfo(TensorRole.Norm, 40, InMtp: true), roles["mtp.norm.weight"]);
        Assert.Equal(new TensorRoleInfo(TensorRole.Vision), roles["model.visual.blocks.0.attn.qkv.weight"]);
        Assert.Equal(new TensorRoleInfo(TensorRole.Vision), roles["model.visual.merger.linear_fc1.bias"]);
        Assert.Equal(new TensorRoleInfo(TensorRole.LmHead), roles["lm_head.weight"]);

        var up = family.ExpertTensor(0, 5, ExpertProjection.Up, moe);
        Assert.Equal(new ExpertTensorRef(p + "0.mlp.experts.gate_up_proj", ExpertLayout.Fused, 5, 512, 512), up);
        Assert.Equal(new ExpertTensorRef(p + "0.mlp.experts.gate_up_proj", ExpertLayout.Fused, 5, 0, 512), family.ExpertTensor(0, 5, ExpertProjection.Gate, moe));
        Assert.Equal(new ExpertTensorRef("mtp.layers.0.mlp.experts.down_proj", ExpertLayout.Fused, 9), family.ExpertTensor(40, 9, ExpertProjection.Down, moe));
        Assert.Equal("mtp.layers.0.mlp.gate.weight", family.RouterWeightName(40, moe));

        // The real shapes agree with the config (lm_head has no shape in the CSV and is not checked).
        CheckpointValidator.ValidateStructure(family, moe, new HeaderOnlyTensorSource(infos), "3.6.config.json");
    }

    [Fact]
    public void Qwen36ValidationCatchesAWrongExpertCount()
    {
        var config = FamilyTestData.LoadConfig("Qwen3.6-35B-A3B/3.6.config.json");
        ConfigKeys.Set(config, "text_config.num_experts", 128);
        var (family, moe) = FamilyRegistry.Read(config, "/q/config.json");
        var infos = FamilyTestData.Qwen36Csv();
        moe = family.ResolveLayout(moe, infos.Select(i => i.Name).ToList());
        var ex = Assert.Throws<MoeCompressException>(() =>
            CheckpointValidator.ValidateStructure(family, moe, new HeaderOnlyTensorSource(infos), "/q/config.json"));
        Assert.Equal(ErrorKind.InvalidConfig, ex.Kind);
        Assert.Equal("/q/config.json says text_config.num_experts=128 but tensor 'model.language_model.layers.0.mlp.gate.weight' has 256 rows", ex.Message);
    }

    [Theory]
    [InlineData("model.layers.61.enorm.weight", TensorRole.Norm)]
    [InlineData("model.layers.61.hnorm.weight", TensorRole.Norm)]
    [InlineData("model.layers.61.eh_proj.weight", TensorRole.Mtp)]
    [InlineData("model.layers.61.embed_tokens.weight", TensorRole.Embedding)]
    [InlineData("model.layers.61.shared_head.head.weight", TensorRole.LmHead)]
    [InlineData("model.layers.61.shared_head.norm.weight", TensorRole.Norm)]
    [InlineData("model.layers.61.mlp.experts.255.down_proj.weight", TensorRole.RoutedExpert)]
    [InlineData("model.layers.61.self_attn.kv_a_proj_with_mqa.weight", TensorRole.Attention)]
    public void DeepSeekV3MtpLayer(string name, TensorRole role)
    {
        var (family, moe) = Read("DeepSeek-R1/config.json");
        var r = family.Classify(name, moe);
        Assert.Equal(role, r.Role);
        Assert.Equal(61, r.Layer);
        Assert.True(r.InMtp);
    }

    [Fact]
    public void DeepSeekV3Names()
    {
        var (family, moe) = Read("DeepSeek-R1/config.json");
        TensorRoleInfo C(string n) => family.Classify(n, moe);
        Assert.Equal(new TensorRoleInfo(TensorRole.DenseMlp, 0, null, ExpertProjection.Gate), C("model.layers.0.mlp.gate_proj.weight"));
        Assert.Equal(new TensorRoleInfo(TensorRole.SharedExpert, 3, null, ExpertProjection.Up), C("model.layers.3.mlp.shared_experts.up_proj.weight"));
        Assert.Equal(new TensorRoleInfo(TensorRole.CorrectionBias, 3, IsBias: true), C("model.layers.3.mlp.gate.e_score_correction_bias"));
        Assert.Equal(new TensorRoleInfo(TensorRole.RouterWeight, 60), C("model.layers.60.mlp.gate.weight"));
        Assert.Equal(new TensorRoleInfo(TensorRole.Attention, 5), C("model.layers.5.self_attn.q_a_proj.weight"));
        Assert.Equal(new TensorRoleInfo(TensorRole.Attention, 5), C("model.layers.5.self_attn.q_b_proj.weight"));
        Assert.Equal(new TensorRoleInfo(TensorRole.Attention, 5), C("model.layers.5.self_attn.kv_b_proj.weight"));
        Assert.Equal(new TensorRoleInfo(TensorRole.Norm, 5), C("model.layers.5.self_attn.q_a_layernorm.weight"));
        Assert.Equal(new TensorRoleInfo(TensorRole.Norm, 5), C("model.layers.5.self_attn.kv_a_layernorm.weight"));
        // FP8 release: block scales carry the role of their weight.
        Assert.Equal(new TensorRoleInfo(TensorRole.RoutedExpert, 4, 17, ExpertProjection.Down, QuantScale: true),
            C("model.layers.4.mlp.experts.17.down_proj.weight_scale_inv"));
        Assert.Equal(TensorRole.Other, C("model.layers.4.mlp.something_new.weight").Role);
    }

    [Fact]
    public void GptOssNames()
    {
        var family = FamilyRegistry.Get("gpt-oss");
        var moe = family.ReadConfig(ReferenceConfigs.Load("gpt-oss-20b"), "config.json");
        Assert.True(moe.Mxfp4Experts);
        Assert.Equal(new[] { "num_experts_per_tok", "experts_per_token" }, moe.TopKKeys);
        TensorRoleInfo C(string n) => family.Classify(n, moe);
        Assert.Equal(new TensorRoleInfo(TensorRole.RouterWeight, 3), C("model.layers.3.mlp.router.weight"));
        Assert.Equal(new TensorRoleInfo(TensorRole.RouterBias, 3, IsBias: true), C("model.layers.3.mlp.router.bias"));
        Assert.Equal(new TensorRoleInfo(TensorRole.RoutedExpert, 3, null, ExpertProjection.GateUp, Fused: true), C("model.layers.3.mlp.experts.gate_up_proj_blocks"));
        Assert.Equal(new TensorRoleInfo(TensorRole.RoutedExpert, 3, null, ExpertProjection.Down, Fused: true, QuantScale: true), C("model.layers.3.mlp.experts.down_proj_scales"));
        Assert.Equal(new TensorRoleInfo(TensorRole.RoutedExpert, 3, null, ExpertProjection.Down, Fused: true, IsBias: true), C("model.layers.3.mlp.experts.down_proj_bias"));
        Assert.Equal(new TensorRoleInfo(TensorRole.Attention, 3), C("model.layers.3.self_attn.sinks"));
        Assert.Equal(new TensorRoleInfo(TensorRole.Attention, 3, IsBias: true), C("model.layers.3.self_attn.q_proj.bias"));

        var up = family.ExpertTensor(2, 7, ExpertProjection.Up, moe);
        Assert.Equal(new ExpertTensorRef("model.layers.2.mlp.experts.gate_up_proj_blocks", ExpertLayout.FusedMxfp4, 7, 1, 2880, true,
            "model.layers.2.mlp.experts.gate_up_proj_bias", "model.layers.2.mlp.experts.gate_up_proj_scales"), up);
        var dequantized = family.ResolveLayout(moe, ["model.layers.0.mlp.experts.gate_up_proj", "model.layers.0.mlp.experts.down_proj"]);
        Assert.False(dequantized.Mxfp4Experts);
        Assert.Equal(ExpertLayout.FusedTransposed, family.ExpertTensor(2, 7, ExpertProjection.Down, dequantized).Layout);
    }

    [Fact]
    public void GraniteAndPhiNames()
    {
        var granite = FamilyRegistry.Get("granitemoe");
        var gm = granite.ReadConfig(ReferenceConfigs.Load("granite-3.0-1b-a400m-base"), "config.json");
        Assert.True(gm.FusedExperts);
        Assert.Equal(new TensorRoleInfo(TensorRole.RouterWeight, 1), granite.Classify("model.layers.1.block_sparse_moe.router.layer.weight", gm));
        Assert.Equal(new TensorRoleInfo(TensorRole.RoutedExpert, 1, null, ExpertProjection.GateUp, Fused: true), granite.Classify("model.layers.1.block_sparse_moe.input_linear.weight", gm));
        Assert.Equal(new ExpertTensorRef("model.layers.1.block_sparse_moe.input_linear.weight", ExpertLayout.Fused, 4, 512, 512),
            granite.ExpertTensor(1, 4, ExpertProjection.Up, gm));

        var phi = FamilyRegistry.Get("phimoe");
        var pm = phi.ReadConfig(ReferenceConfigs.Load("Phi-3.5-MoE-instruct"), "config.json");
        Assert.False(pm.NormTopKProb);
        Assert.Equal(new TensorRoleInfo(TensorRole.Norm, 2, IsBias: true), phi.Classify("model.layers.2.input_layernorm.bias", pm));
        Assert.Equal(new TensorRoleInfo(TensorRole.Norm, IsBias: true), phi.Classify("model.norm.bias", pm));
        Assert.Equal(new TensorRoleInfo(TensorRole.LmHead, IsBias: true), phi.Classify("lm_head.bias", pm));
        Assert.Equal(new TensorRoleInfo(TensorRole.Attention, 2, IsBias: true), phi.Classify("model.layers.2.self_attn.v_proj.bias", pm));
    }

    [Fact]
    public void GateUpIsNotAnExpertProjection()
    {
        var (family, moe) = Read("Mixtral-8x7B-v0.1/config.json");
        Assert.Throws<ArgumentException>(() => family.ExpertTensor(0, 0, ExpertProjection.GateUp, moe));
    }
}
