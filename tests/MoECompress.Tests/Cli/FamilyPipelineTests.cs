using System.Text.Json;
using System.Text.Json.Nodes;
using MoECompress.Formats.Families;
using MoECompress.Tests.Calibration;
using MoECompress.Tests.Quantization;

namespace MoECompress.Tests.Cli;

/// <summary>
/// The whole command-line path on a synthesized checkpoint of each newer family: synthesize → calibrate → prune 25%
/// (REAP) → quantize 4-bit GPTQ → eval against the pruned model. The pruned checkpoint must keep the family's
/// loadability rules: one expert count everywhere, every MoE layer's (MTP included) router rows, correction bias and
/// experts cut to it.
/// </summary>
public sealed class FamilyPipelineTests
{
    private static string[] Calibration => ["--data", QuantizeTestData.TokenData, "--samples", "4", "--seq-len", "32"];

    [Theory]
    [InlineData("glm4.5-moe", "gptq")]
    [InlineData("kimi-k2", "gptq")]
    [InlineData("gpt-oss", "dequantized")]
    [InlineData("phimoe", "gptq")]
    [InlineData("granitemoe", "dequantized")]
    [InlineData("granitemoe-shared", "dequantized")]
    [InlineData("qwen3-next", "gptq")]
    [InlineData("qwen3.5-moe", "gptq")]
    [InlineData("qwen3.6-moe", "dequantized")]
    public void SynthesizeCalibratePruneQuantizeEval(string preset, string format)
    {
        var model = TinyCalibrationModel.NewPath(preset);
        Run("synthesize", preset, model);
        WriteWordTokenizer(model);
        int experts;
        using (var original = ModelCheckpoint.Open(model))
        {
            experts = original.MoE.NumExperts;
            // Shared experts (GraniteMoeShared's shared_mlp among them) are present, so prune and quantize meet them.
            if (original.MoE.NumSharedExperts > 0)
                Assert.Contains(original.Tensors.Names, n => original.Classify(n).Role == TensorRole.SharedExpert);
        }

        var profile = TinyCalibrationModel.NewPath(preset + "-profile");
        Run(["calibrate", model, "--out", profile, .. Calibration]);

        var pruned = TinyCalibrationModel.NewPath(preset + "-pruned");
        Run("prune", model, pruned, "--ratio", "0.25", "--method", "reap", "--profile", profile);
        AssertCutEverywhere(pruned, experts - experts / 4);
        AssertNonExpertTensorsKept(model, pruned);

        // FP8 (Kimi K2) and MXFP4 (GPT-OSS) releases: prune leaves the stored codes and scales as they were; quantize
        // reads plain weights, so the pruned model is dequantized first.
        var plain = pruned;
        var method = QuantMethodOf(pruned);
        if (method is "fp8" or "mxfp4")
        {
            if (method == "fp8") AssertFp8Kept(model, pruned);
            else AssertMxfp4Kept(model, pruned);
            plain = TinyCalibrationModel.NewPath(preset + "-bf16");
            Run("dequantize", pruned, plain);
        }

        var quantized = TinyCalibrationModel.NewPath(preset + "-gptq");
        Run(["quantize", plain, quantized, "--bits", "4", "--method", "gptq", "--group-size", "32", "--format", format, .. Calibration]);
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(quantized, "config.json")))!;
        if (format == "gptq") Assert.Equal("gptq", (string?)config["quantization_config"]?["quant_method"]);

        var eval = Run("eval", quantized, "--base", pruned, "--data", QuantizeTestData.TokenData, "--context", "32", "--max-tokens", "96", "--json");
        var results = JsonNode.Parse(eval)!["results"]!;
        var perplexity = (double)results["perplexity"]!;
        Assert.True(double.IsFinite(perplexity) && perplexity > 1, $"perplexity {perplexity}");
    }

    private static string? QuantMethodOf(string dir) =>
        (string?)JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "config.json")))!["quantization_config"]?["quant_method"];

    /// <summary>Every tensor the prune kept is stored as in the input (FP8 codes and scales byte for byte, except cut experts' renumbering).</summary>
    private static void AssertFp8Kept(string input, string pruned)
    {
        using var a = ModelCheckpoint.Open(input);
        using var b = ModelCheckpoint.Open(pruned);
        Assert.Equal("fp8", QuantMethodOf(pruned));
        int fp8 = 0;
        foreach (var name in b.Tensors.Names)
        {
            var info = b.Tensors.GetInfo(name);
            if (info.DType != Formats.Safetensors.SafetensorsDType.F8_E4M3) continue;
            fp8++;
            Assert.True(b.Tensors.Contains(name + "_scale_inv"), $"{name} lost its weight_scale_inv");
            var role = b.Classify(name);
            if (role.Role is TensorRole.Attention or TensorRole.SharedExpert or TensorRole.DenseMlp)
                Assert.True(a.Tensors.GetBytes(name).SequenceEqual(b.Tensors.GetBytes(name)), $"{name} changed");
        }
        Assert.True(fp8 > 0, "no FP8 tensor left in the pruned checkpoint");
    }

    /// <summary>The pruned experts are still MXFP4, each one's blocks and scales byte for byte those of an input expert of its layer.</summary>
    private static void AssertMxfp4Kept(string input, string pruned)
    {
        using var a = ModelCheckpoint.Open(input);
        using var b = ModelCheckpoint.Open(pruned);
        Assert.True(b.MoE.Mxfp4Experts);
        int slabs = 0;
        foreach (var name in b.Tensors.Names.Where(n => n.EndsWith("_blocks", StringComparison.Ordinal) || n.EndsWith("_scales", StringComparison.Ordinal)))
        {
            var before = a.Tensors.GetInfo(name);
            var after = b.Tensors.GetInfo(name);
            Assert.Equal(Formats.Safetensors.SafetensorsDType.U8, after.DType);
            int slab = (int)(after.ByteLength / after.Shape[0]);
            var original = a.Tensors.GetBytes(name).ToArray();
            var originals = Enumerable.Range(0, (int)before.Shape[0]).Select(e => original.AsSpan(e * slab, slab).ToArray()).ToList();
            for (int e = 0; e < after.Shape[0]; e++)
            {
                var kept = b.Tensors.GetBytes(name).Slice(e * slab, slab).ToArray();
                Assert.True(originals.Any(o => o.SequenceEqual(kept)), $"{name} expert {e} is not an input expert's bytes");
                slabs++;
            }
        }
        Assert.True(slabs > 0, "no MXFP4 tensor in the pruned checkpoint");
    }

    /// <summary>
    /// Everything outside the routed experts and routers — norms with their biases (Phi-3.5-MoE LayerNorm), attention
    /// and lm_head biases, shared experts, embeddings — is still there with its shape and dtype.
    /// </summary>
    private static void AssertNonExpertTensorsKept(string input, string pruned)
    {
        using var a = ModelCheckpoint.Open(input);
        using var b = ModelCheckpoint.Open(pruned);
        int kept = 0;
        foreach (var name in a.Tensors.Names)
        {
            if (a.Classify(name).Role is TensorRole.RoutedExpert or TensorRole.RouterWeight or TensorRole.RouterBias or TensorRole.CorrectionBias)
                continue;
            Assert.True(b.Tensors.Contains(name), $"{name} is missing from the pruned checkpoint");
            var (before, after) = (a.Tensors.GetInfo(name), b.Tensors.GetInfo(name));
            Assert.Equal(before.Shape, after.Shape);
            Assert.Equal(before.DType, after.DType);
            kept++;
        }
        Assert.True(kept > 0);
    }

    /// <summary>
    /// Every MoE layer, MTP layers included, has exactly <paramref name="experts"/> routed experts, router rows and bias
    /// entries. An MTP layer the config declares but the checkpoint does not store (Qwen3.5 REAP) is skipped.
    /// </summary>
    internal static void AssertCutEverywhere(string dir, int experts)
    {
        using var checkpoint = ModelCheckpoint.Open(dir);
        var moe = checkpoint.MoE;
        Assert.Equal(experts, moe.NumExperts);
        foreach (var key in moe.ExpertCountKeys)
            Assert.Equal(experts, (int)ConfigKeys.Get(checkpoint.Config, key)!);
        var family = checkpoint.Family;
        var layers = moe.MoELayerIndices(includeMtp: true).ToList();
        if (moe.NumMtpLayers > 0) Assert.Contains(layers, moe.IsMtpLayer);
        foreach (var layer in layers)
        {
            var router = family.RouterWeightName(layer, moe);
            if (moe.IsMtpLayer(layer) && !checkpoint.Tensors.Contains(router)) continue;
            Assert.Equal(experts, checkpoint.Tensors.GetInfo(router).Shape[0]);
            foreach (var bias in new[] { family.RouterBiasName(layer, moe), family.CorrectionBiasName(layer, moe) })
                if (bias is not null && checkpoint.Tensors.Contains(bias))
                    Assert.Equal(experts, checkpoint.Tensors.GetInfo(bias).Shape[0]);
        }
        foreach (var name in checkpoint.Tensors.Names)
        {
            var role = checkpoint.Classify(name);
            if (role.Role != TensorRole.RoutedExpert) continue;
            if (role.Expert is { } e) Assert.True(e < experts, $"{name} survived the cut");
            else Assert.Equal(experts, checkpoint.Tensors.GetInfo(name).Shape[0]);
        }
    }

    private static string Run(params string[] args)
    {
        var r = CliRunner.Run(args);
        Assert.True(r.ExitCode == 0, $"{string.Join(' ', args)} exited {r.ExitCode}: {r.Stderr}");
        return r.Stdout;
    }

    /// <summary>
    /// A Hugging Face WordLevel tokenizer.json with exactly 256 ids (the synthetic vocabulary), so `eval` accepts it;
    /// the test data is pre-tokenized, so the words themselves never matter.
    /// </summary>
    internal static void WriteWordTokenizer(string dir)
    {
        var vocab = new JsonObject { ["<unk>"] = 0, ["<s>"] = 1, ["</s>"] = 2 };
        for (int i = 3; i < 256; i++) vocab[$"w{i}"] = i;
        var tokenizer = new JsonObject
        {
            ["version"] = "1.0", ["truncation"] = null, ["padding"] = null, ["added_tokens"] = new JsonArray(),
            ["normalizer"] = null, ["pre_tokenizer"] = new JsonObject { ["type"] = "Whitespace" }, ["post_processor"] = null,
            ["decoder"] = null, ["model"] = new JsonObject { ["type"] = "WordLevel", ["vocab"] = vocab, ["unk_token"] = "<unk>" },
        };
        File.WriteAllText(Path.Combine(dir, "tokenizer.json"), tokenizer.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }
}
