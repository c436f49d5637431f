using System.Text.Json.Nodes;
using MoECompress.Compression.Training;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Families;
using MoECompress.Formats.Safetensors;
using MoECompress.Tests.Cli;
using TorchSharp;
using static TorchSharp.torch;

namespace MoECompress.Tests.Training;

/// <summary>train-reference in the DeepSeek-V3 layout: the exported checkpoint, resume, the bias update, option checks.</summary>
[Collection(nameof(MoECompress.Tests.Reliability.LibtorchThreadCount))] // 1 thread, and bit-identity between runs
public class DeepseekV3TrainingTests
{
    /// <summary>A tiny DeepSeek-V3 run: one dense layer, one MoE layer of 8 experts top-2 plus a shared expert.</summary>
    private static ReferenceModelOptions Tiny(ResumableTrainingFixture f, string output, int steps = 6) => f.Options(output, steps) with
    {
        Layout = ReferenceModelLayout.DeepseekV3,
        Layers = 2, FirstDenseLayers = 1, DenseIntermediateSize = 48,
        HiddenSize = 32, IntermediateSize = 16, Experts = 8, TopK = 2, SharedExperts = 1, AttentionHeads = 2,
        KvLoraRank = 16, QkNopeHeadDim = 8, QkRopeHeadDim = 4, VHeadDim = 8, RoutedScalingFactor = 2.5,
        // A large γ, so that the biases move routing within a few steps.
        BiasUpdateRate = 0.02, SequenceAuxLossCoefficient = 1e-3,
    };

    [Fact]
    public void ExportedCheckpointLoadsInTheEngineWithTheTrainingModelsLogits()
    {
        using var f = new ResumableTrainingFixture();
        var output = f.Output("dsv3");
        ReferenceModelTrainer.Train(Tiny(f, output) with { InitializerRange = 0.2 });

        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(output, "config.json")))!.AsObject();
        Assert.Equal("DeepseekV3ForCausalLM", config["architectures"]![0]!.GetValue<string>());
        Assert.Equal("deepseek_v3", config["model_type"]!.GetValue<string>());
        Assert.Equal(1, config["first_k_dense_replace"]!.GetValue<int>());
        Assert.Equal(8, config["n_routed_experts"]!.GetValue<int>());
        Assert.Null(config["q_lora_rank"]);
        using (var st = SafetensorsCheckpoint.Open(output))
        {
            Assert.Equal(SafetensorsDType.F32, st.GetInfo("model.layers.1.mlp.gate.e_score_correction_bias").DType);
            Assert.Equal(SafetensorsDType.BF16, st.GetInfo("model.layers.1.mlp.experts.7.down_proj.weight").DType);
            Assert.True(st.Contains("model.layers.0.mlp.gate_proj.weight"));
            Assert.True(st.Contains("model.layers.1.mlp.shared_experts.up_proj.weight"));
            Assert.True(st.Contains("model.layers.1.self_attn.kv_a_layernorm.weight"));
            Assert.False(st.Contains("lm_head.weight")); // tied
            using var bias = st.ToTensor("model.layers.1.mlp.gate.e_score_correction_bias", ScalarType.Float32);
            Assert.True(bias.abs().max().item<float>() > 0, "the bias update never ran");
        }

        using var trainingModel = ReferenceCheckpointLoader.Load(output);
        Assert.IsType<DeepseekV3TrainingModel>(trainingModel);
        var encoder = new SentencePieceEncoder(ResumableTrainingFixture.Tokenizer);
        var ids = encoder.Encode("The experts of a mixture route each token; for (int i = 0; i < n; i++) sum += i;")
            .Prepend(encoder.BosId).Take(16).ToArray();
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var expected = trainingModel.Forward(torch.tensor(ids.Select(i => (long)i).ToArray(), [1, ids.Length])).Logits[0];

        using (var checkpoint = ModelCheckpoint.Open(output))
            Assert.Equal("deepseek-v3", checkpoint.Family.Name);
        // Relative tolerance: the two implementations sum in different orders.
        EngineAgreementTests.AssertEngineLogits(output, ids, expected, tolerance: 1e-4f * expected.abs().max().item<float>());
    }

    [Fact]
    public void StoppedAndResumedRunEqualsAnUninterruptedOne()
    {
        using var f = new ResumableTrainingFixture();
        var resumed = f.Output("out");
        var straight = ResumableTrainingFixture.TrainStraightAndMoveAside(Tiny(f, resumed));
        ResumableTrainingFixture.TrainAndStop(Tiny(f, resumed), stopAfter: 3);
        var checkpoint = new TrainingCheckpoints(resumed + ".training").Latest()!;
        using (var st = SafetensorsCheckpoint.Open(checkpoint))
            Assert.Contains(st.Names, n => n.StartsWith("buffer.", StringComparison.Ordinal) && n.EndsWith("e_score_correction_bias", StringComparison.Ordinal));

        // A changed DeepSeek-V3 option is refused by name.
        var e = Assert.Throws<MoeCompressException>(() => ReferenceModelTrainer.Train(Tiny(f, resumed) with { BiasUpdateRate = 0.01, Resume = true }));
        Assert.Contains("--bias-update-rate was ", e.Message);

        ReferenceModelTrainer.Train(Tiny(f, resumed) with { Resume = true });
        ResumableTrainingFixture.AssertSameCheckpoint(straight, resumed);
    }

    [Fact]
    public void BiasUpdateMovesTheLoadTowardBalance()
    {
        var options = new ReferenceModelOptions
        {
            TrainDataDirectory = "unused", TokenizerModelPath = "unused", OutputDirectory = "unused",
            Layout = ReferenceModelLayout.DeepseekV3, HiddenSize = 16, IntermediateSize = 8, Experts = 8, TopK = 2, SharedExperts = 0,
        };
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var generator = new Generator(3);
        using var block = new TrainingDeepseekMoeBlock("moe", options, s => torch.randn(s, generator: generator) * 0.02,
            s => torch.randn(s, generator: generator) * 0.02);
        // Tokens share a common direction that experts 0 and 1 are aligned with: without the bias they take nearly all
        // selections (max/mean load up to E/k = 4).
        // Scores spread over tokens (not saturated), so that small bias steps move few selections.
        var tokens = torch.randn([512, 16], generator: generator) + torch.ones(16) * 0.5;
        block.gate.copy_(torch.randn([8, 16], generator: generator) * 0.3);
        block.gate[0].copy_(torch.ones(16) * 0.3);
        block.gate[1].copy_(torch.ones(16) * 0.25);

        double Imbalance()
        {
            var (_, _, selected, _) = block.Route(tokens);
            var load = torch.bincount(selected.flatten(), minlength: 8).to(ScalarType.Float64);
            return load.max().item<double>() / load.mean().item<double>();
        }
        var before = Imbalance();
        for (int step = 0; step < 1000; step++)
        {
            var (_, _, selected, _) = block.Route(tokens);
            block.UpdateCorrectionBias(selected, 1e-3);
        }
        var after = Imbalance();
        Assert.True(before > 2.5, $"the toy case starts balanced enough already (max/mean load {before:F2})");
        Assert.True(after < 1.3 && after < before / 2, $"max/mean load went from {before:F2} to {after:F2}");
        Assert.True(block.e_score_correction_bias[0].item<float>() < 0, "the overloaded expert's bias must go down");
    }

    [Theory]
    [InlineData("--dense-layers")]
    [InlineData("--kv-lora-rank")]
    [InlineData("--qk-rope-dim")]
    [InlineData("--v-head-dim")]
    [InlineData("--shared-experts")]
    [InlineData("--routed-scaling")]
    [InlineData("--bias-update-rate")]
    [InlineData("--seq-aux-loss")]
    public void InvalidDeepseekOptionsAreNamed(string option)
    {
        using var f = new ResumableTrainingFixture();
        var good = Tiny(f, f.Output("x"));
        good.Validate();
        var bad = option switch
        {
            "--dense-layers" => good with { FirstDenseLayers = good.Layers },
            "--kv-lora-rank" => good with { KvLoraRank = 0 },
            "--qk-rope-dim" => good with { QkRopeHeadDim = 3 },
            "--v-head-dim" => good with { VHeadDim = 0 },
            "--shared-experts" => good with { SharedExperts = -1 },
            "--routed-scaling" => good with { RoutedScalingFactor = 0 },
            "--bias-update-rate" => good with { BiasUpdateRate = -1e-3 },
            _ => good with { SequenceAuxLossCoefficient = double.NaN },
        };
        var e = Assert.Throws<MoeCompressException>(bad.Validate);
        Assert.Equal(ErrorKind.Usage, e.Kind);
        Assert.StartsWith(option, e.Message);
    }

    [Fact]
    public void CliTrainsTheDeepseekLayoutAndRefusesOptionsOfTheOtherLayout()
    {
        using var f = new ResumableTrainingFixture();
        string[] Args(string output, params string[] extra) =>
        [
            "train-reference", "--layout", "deepseek-v3", "--train-data", f.Data, "--tokenizer", ResumableTrainingFixture.Tokenizer,
            "--output", output, "--layers", "2", "--dense-layers", "1", "--dense-intermediate", "48", "--hidden", "32",
            "--intermediate", "16", "--experts", "8", "--top-k", "2", "--shared-experts", "1", "--heads", "2", "--kv-lora-rank", "16",
            "--qk-nope-dim", "8", "--qk-rope-dim", "4", "--v-head-dim", "8", "--seq-len", "16", "--batch", "2", "--steps", "2",
            "--warmup", "1", "--threads", "1", "--checkpoint-minutes", "0", .. extra,
        ];
        var refused = CliRunner.Run(Args(f.Output("bad"), "--kv-heads", "2"));
        Assert.NotEqual(0, refused.ExitCode);
        Assert.Contains("--kv-heads", refused.Stderr);
        var mixtral = CliRunner.Run(f.CliArguments(f.Output("bad2"), 2, "--seq-aux-loss", "0.01"));
        Assert.NotEqual(0, mixtral.ExitCode);
        Assert.Contains("--seq-aux-loss", mixtral.Stderr);

        var output = f.Output("model");
        var r = CliRunner.Run(Args(output));
        Assert.True(r.ExitCode == 0, r.Stderr);
        var inspect = CliRunner.Run("inspect", output, "--json");
        Assert.True(inspect.ExitCode == 0, inspect.Stderr);
        Assert.Contains("\"family\": \"deepseek-v3\"", inspect.Stdout);
    }
}
