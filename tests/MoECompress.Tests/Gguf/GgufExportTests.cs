using System.Runtime.InteropServices;
using MoECompress.Compression.Evaluation;
using MoECompress.Compression.Gguf;
using MoECompress.Compression.Pruning;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Families;
using MoECompress.Formats.Gguf;
using MoECompress.Formats.Safetensors;
using MoECompress.Tests.Calibration;
using MoECompress.Tests.Quantization;

namespace MoECompress.Tests.Gguf;

/// <summary>
/// GGUF export end to end on tiny checkpoints: lossless F32 round trips through our reader (llama q/k permutation,
/// DeepSeek kv_b split, stacked experts), a pruned DeepSeek-V3 with consistent expert counts, a config rebuilt from the
/// standard keys alone, eval of the GGUF equal to eval of its dequantized safetensors, the allocation under a budget,
/// and the errors for bad requests.
/// </summary>
public sealed class GgufExportTests
{
    private static string Out(string name) => TinyCalibrationModel.NewPath(name) + ".gguf";

    private static GgufExportReport Export(string model, string output, GgmlType? uniform = null, double? bits = null, long? size = null,
        IReadOnlyList<GgmlType>? candidates = null) =>
        GgufExporter.Run(new GgufExportOptions
        {
            Model = model, Output = output, Uniform = uniform, Bits = bits, Size = size,
            Candidates = candidates ?? new GgufExportOptions { Model = "" }.Candidates,
            Data = QuantizeTestData.TokenData, DataOptions = new() { Samples = 8, SeqLen = 24 },
        });

    private static void AssertSameTensors(ModelCheckpoint expected, ModelCheckpoint actual, Func<string, bool>? include = null)
    {
        foreach (var name in expected.Tensors.Names.Where(include ?? (_ => true)))
        {
            Assert.True(actual.Tensors.Contains(name), $"missing {name}");
            using var a = expected.Tensors.ToTensor(name, TorchSharp.torch.ScalarType.Float32);
            using var b = actual.Tensors.ToTensor(name, TorchSharp.torch.ScalarType.Float32);
            Assert.Equal(a.shape, b.shape);
            Assert.True(a.data<float>().ToArray().SequenceEqual(b.data<float>().ToArray()), $"{name} differs");
        }
    }

    [Fact]
    public void MixtralAtF32RoundTripsExactlyThroughTheReader()
    {
        var path = Out("mixtral-f32");
        var report = Export(TinyCalibrationModel.Mixtral, path, GgmlType.F32);
        Assert.Equal(new FileInfo(path).Length, report.ActualBytes);
        Assert.Equal(report.PredictedBytes, report.ActualBytes);

        using var source = ModelCheckpoint.Open(TinyCalibrationModel.Mixtral);
        using (var gguf = GgufFile.Open(path))
        {
            Assert.Equal("llama", gguf.Get("general.architecture")!.Value);
            Assert.Equal(GgufValueType.UInt32, gguf.Get("llama.expert_count")!.Type);
            Assert.Equal(8u, gguf.Get("llama.expert_count")!.Value);
            Assert.Equal(GgufValueType.Float32, gguf.Get("llama.attention.layer_norm_rms_epsilon")!.Type);
            var h = source.MoE.HiddenSize;
            var i = source.MoE.ExpertIntermediateSize;
            Assert.Equal([h, i, 8], gguf.GetTensor("blk.0.ffn_gate_exps.weight").Dimensions);
            Assert.Equal([i, h, 8], gguf.GetTensor("blk.0.ffn_down_exps.weight").Dimensions);
            Assert.Equal(GgmlType.F32, gguf.GetTensor("blk.0.ffn_gate_inp.weight").Type);
            Assert.Equal([h, 8], gguf.GetTensor("blk.0.ffn_gate_inp.weight").Dimensions);
            // q rows are stored in ggml's interleaved RoPE order, not HF's.
            using var q = source.Tensors.ToTensor("model.layers.0.self_attn.q_proj.weight", TorchSharp.torch.ScalarType.Float32);
            var hf = q.data<float>().ToArray();
            var stored = gguf.Dequantize("blk.0.attn_q.weight");
            Assert.NotEqual(hf, stored);
            var heads = source.Config["num_attention_heads"]!.GetValue<int>();
            Assert.Equal(GgufArchitecture.PermuteRows(hf, heads, (int)q.shape[0], (int)q.shape[1], inverse: false), stored);
        }
        using var back = ModelCheckpoint.Open(path);
        Assert.Equal("mixtral", back.Family.Name);
        Assert.Equal(source.MoE.NumExperts, back.MoE.NumExperts);
        Assert.Equal(source.Tensors.Names.Count, back.Tensors.Names.Count);
        AssertSameTensors(source, back);
    }

    [Theory]
    [InlineData("qwen2-moe", "qwen2moe")]
    [InlineData("qwen3-moe", "qwen3moe")]
    [InlineData("qwen3-moe-fused", "qwen3moe")]
    [InlineData("olmoe", "olmoe")]
    [InlineData("deepseek-v2-lite", "deepseek2")]
    public void OtherFamiliesRoundTripExactlyAtF32(string preset, string arch)
    {
        var model = TinyCalibrationModel.NewPath(preset);
        TinyCalibrationModel.Write(preset, model, 3, (_, _) => { });
        var path = Out(preset);
        GgufExporter.Run(new GgufExportOptions { Model = model, Output = path, Uniform = GgmlType.F32 });
        using var source = ModelCheckpoint.Open(model);
        using (var gguf = GgufFile.Open(path))
        {
            Assert.Equal(arch, gguf.Get("general.architecture")!.Value);
            Assert.Equal((uint)source.MoE.NumExperts, gguf.Get($"{arch}.expert_count")!.Value);
        }
        using var back = ModelCheckpoint.Open(path);
        Assert.Equal(source.Family.Name, back.Family.Name);
        AssertSameTensors(source, back, n => !source.Classify(n).InMtp && (source.Classify(n).Layer ?? 0) < source.MoE.NumLayers
                                             && source.Classify(n).Role != TensorRole.RoutedExpert);
        foreach (var l in source.MoE.MoELayerIndices())
            for (var e = 0; e < source.MoE.NumExperts; e++)
                foreach (var p in new[] { ExpertProjection.Gate, ExpertProjection.Up, ExpertProjection.Down })
                {
                    using var a = source.LoadExpert(l, e, p);
                    using var b = back.LoadExpert(l, e, p);
                    Assert.True(a.data<float>().ToArray().SequenceEqual(b.data<float>().ToArray()), $"layer {l} expert {e} {p} differs");
                }
    }

    [Fact]
    public void ConfigIsRebuiltFromTheStandardKeysWhenTheStoredOneIsAbsent()
    {
        var path = Out("mixtral-keys");
        Export(TinyCalibrationModel.Mixtral, path, GgmlType.F32);
        var stripped = Out("mixtral-stripped");
        using (var gguf = GgufFile.Open(path))
        {
            var metadata = gguf.Metadata.Where(kv => kv.Key != GgufArchitecture.SourceConfigKey).ToList();
            using var writer = GgufWriter.Create(stripped, metadata, gguf.Tensors.Select(t => (t.Name, t.Dimensions, t.Type)).ToList());
            foreach (var t in gguf.Tensors) writer.WriteTensor(t.Name, gguf.GetBytes(t.Name));
            writer.Commit();
        }
        using var source = ModelCheckpoint.Open(TinyCalibrationModel.Mixtral);
        using var back = ModelCheckpoint.Open(stripped);
        Assert.False(((GgufTensorSource)back.Tensors).ConfigStored);
        Assert.Equal(source.MoE.NumExperts, back.MoE.NumExperts);
        Assert.Equal(source.MoE.TopK, back.MoE.TopK);
        Assert.Equal(source.MoE.ExpertIntermediateSize, back.MoE.ExpertIntermediateSize);
        foreach (var key in new[] { "num_key_value_heads", "rms_norm_eps", "rope_theta" })
            Assert.Equal(double.Parse(source.Config[key]!.ToJsonString(), System.Globalization.CultureInfo.InvariantCulture), double.Parse(back.Config[key]!.ToJsonString(), System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal(source.MoE.TieWordEmbeddings, back.MoE.TieWordEmbeddings);
        AssertSameTensors(source, back);
    }

    [Fact]
    public void PrunedDeepSeekV3ExportsWithConsistentExpertCounts()
    {
        var pruned = TinyCalibrationModel.NewPath("dsv3-pruned");
        Pruner.Run(new PruneOptions { Model = TinyCalibrationModel.DeepSeekV3, Output = pruned, Keep = 8, Method = "frequency", Profile = QuantizeTestData.Profile });
        var path = Out("dsv3-f32");
        var report = Export(pruned, path, GgmlType.F32);
        Assert.Equal(0, report.FallbackCount);

        using var source = ModelCheckpoint.Open(pruned);
        Assert.Equal(8, source.MoE.NumExperts);
        using (var gguf = GgufFile.Open(path))
        {
            Assert.Equal("deepseek2", gguf.Get("general.architecture")!.Value);
            Assert.Equal(8u, gguf.Get("deepseek2.expert_count")!.Value);
            Assert.Equal(2u, gguf.Get("deepseek2.expert_gating_func")!.Value);
            Assert.Equal((uint)source.MoE.IsMoELayer.TakeWhile(m => !m).Count(), gguf.Get("deepseek2.leading_dense_block_count")!.Value);
            foreach (var l in source.MoE.MoELayerIndices())
            {
                foreach (var p in new[] { "gate", "up", "down" })
                    Assert.Equal(8, gguf.GetTensor($"blk.{l}.ffn_{p}_exps.weight").Dimensions[2]);
                Assert.Equal([source.MoE.HiddenSize, 8], gguf.GetTensor($"blk.{l}.ffn_gate_inp.weight").Dimensions);
                Assert.Equal([8], gguf.GetTensor($"blk.{l}.exp_probs_b.bias").Dimensions);
                Assert.Equal(GgmlType.F32, gguf.GetTensor($"blk.{l}.exp_probs_b.bias").Type);
                Assert.True(gguf.Contains($"blk.{l}.ffn_gate_shexp.weight"));
                Assert.True(gguf.Contains($"blk.{l}.attn_k_b.weight") && gguf.Contains($"blk.{l}.attn_v_b.weight"));
                Assert.False(gguf.Contains($"blk.{l}.attn_kv_b.weight"));
            }
            Assert.True(gguf.Contains("blk.0.ffn_gate.weight")); // the dense first layer
        }
        using var back = ModelCheckpoint.Open(path);
        Assert.Equal(8, back.MoE.NumExperts);
        Assert.Equal(source.MoE.NumGroups, back.MoE.NumGroups);
        AssertSameTensors(source, back, n => !source.Classify(n).InMtp && (source.Classify(n).Layer ?? 0) < source.MoE.NumLayers);
    }

    [Fact]
    public void EvalOfTheGgufEqualsEvalOfItsDequantizedSafetensors()
    {
        var path = Out("mixtral-q4");
        var report = Export(GgufTestModels.Mixtral, path, GgmlType.Q4_0);
        Assert.Contains(report.Tensors, t => t.Name == "blk.0.ffn_gate_exps.weight" && t.Type == GgmlType.Q4_0);
        Assert.True(report.ActualBytes < PerDomainEvaluation.TensorBytes(GgufTestModels.Mixtral) * 0.2);

        var dequantized = TinyCalibrationModel.NewPath("mixtral-q4-dequantized");
        using (var gguf = GgufTensorSource.Open(path))
        {
            using var writer = CheckpointWriter.Create(dequantized,
                gguf.Names.Select(n => new TensorSpec(n, SafetensorsDType.F32, gguf.GetInfo(n).Shape)).ToList(), new CheckpointWriterOptions { FlushToDisk = false });
            foreach (var n in gguf.Names) writer.Write(n, gguf.GetBytes(n));
            writer.WriteTextFile("config.json", gguf.Config.ToJsonString());
            writer.WriteFile("tokenizer.model", File.ReadAllBytes(Path.Combine(GgufTestModels.Mixtral, "tokenizer.model")));
            writer.Commit();
        }
        var text = TinyCalibrationModel.NewPath("heldout") + ".txt";
        File.WriteAllText(text, "A mixture of experts sends every token to a few of its experts, so only part of the network runs. " +
                                "Quantization stores each weight in fewer bits; the error it adds shows up as a higher perplexity.");
        EvaluationReport Eval(string model) => Evaluator.Run(new EvaluateOptions { Model = model, Base = GgufTestModels.Mixtral, Data = text, Context = 32, Stride = 16 });
        var fromGguf = Eval(path);
        var fromSafetensors = Eval(dequantized);
        Assert.Equal(fromSafetensors.Metrics.TokensScored, fromGguf.Metrics.TokensScored);
        Assert.Equal(fromSafetensors.Metrics.Perplexity, fromGguf.Metrics.Perplexity, fromSafetensors.Metrics.Perplexity * 1e-6);
        Assert.Equal(fromSafetensors.Metrics.MeanKl!.Value, fromGguf.Metrics.MeanKl!.Value, 1e-9 + fromSafetensors.Metrics.MeanKl.Value * 1e-6);
        Assert.True(fromGguf.Metrics.MeanKl > 0); // 4-bit weights do change the output
        Assert.Equal(path, fromGguf.Model.Path);
    }

    [Fact]
    public void AllocationMeetsTheBudgetAndSpendsIt()
    {
        var tight = Export(GgufTestModels.Mixtral, Out("mixtral-bits5"), bits: 5.0, candidates: [GgmlType.Q4_0, GgmlType.Q5_0, GgmlType.Q8_0]);
        Assert.InRange(tight.ExpertBitsPerWeight, 4.5, 5.0);
        Assert.Contains(tight.Tensors, t => t.Name.Contains("_exps") && t.Type != GgmlType.Q4_0); // the budget above Q4_0 is used

        var all8 = Export(GgufTestModels.Mixtral, Out("mixtral-bits9"), bits: 9.0, candidates: [GgmlType.Q4_0, GgmlType.Q8_0]);
        Assert.All(all8.Tensors.Where(t => t.Name.Contains("_exps")), t => Assert.Equal(GgmlType.Q8_0, t.Type));

        var ex = Assert.Throws<MoeCompressException>(() => Export(GgufTestModels.Mixtral, Out("mixtral-bits2"), bits: 2.0, candidates: [GgmlType.Q4_0]));
        Assert.Equal(ErrorKind.Infeasible, ex.Kind);
    }

    [Fact]
    public void KQuantRowsThatAreNotWholeSuperBlocksFallBackAndAreCounted()
    {
        var report = Export(GgufTestModels.Mixtral, Out("mixtral-q4k"), GgmlType.Q4_K);
        Assert.All(report.Tensors.Where(t => t.Name.Contains("_exps")), t => Assert.Equal((GgmlType.Q4_K, GgmlType.Q5_0), (t.Requested, t.Type)));
        Assert.True(report.FallbackCount >= 3 * GgufTestModels.Layers);
        Assert.Contains(report.Notes, n => n.Contains("fallback"));
        Assert.Contains("fallback Q4_K → Q5_0", report.ToMarkdown());
    }

    [Fact]
    public void BadRequestsFailBeforeWritingAnything()
    {
        var output = Out("never");
        Assert.Equal(ErrorKind.Usage, Assert.Throws<MoeCompressException>(() =>
            GgufExporter.Run(new GgufExportOptions { Model = GgufTestModels.Mixtral, Output = output, Uniform = GgmlType.Q8_0, Bits = 4 })).Kind);
        Assert.Equal(ErrorKind.Usage, Assert.Throws<MoeCompressException>(() =>
            GgufExporter.Run(new GgufExportOptions { Model = GgufTestModels.Mixtral, Output = output[..^5] + ".bin", Uniform = GgmlType.Q8_0 })).Kind);
        var phi = TinyCalibrationModel.NewPath("phimoe");
        TinyCalibrationModel.Write("phimoe", phi, 1, (_, _) => { });
        var ex = Assert.Throws<MoeCompressException>(() => GgufExporter.Run(new GgufExportOptions { Model = phi, Output = output, Uniform = GgmlType.F16 }));
        Assert.Equal(ErrorKind.InvalidConfig, ex.Kind);
        Assert.Contains("phimoe", ex.Message);
        Assert.False(File.Exists(output));
        // Only this test's names: other tests write their own temporary files in the same folder meanwhile.
        Assert.Empty(Directory.GetFiles(Path.GetDirectoryName(output)!, $".{Path.GetFileName(output)}.tmp-*"));
        Assert.Empty(Directory.GetFiles(Path.GetDirectoryName(output)!, $".{Path.GetFileName(output)[..^5]}.bin.tmp-*"));
    }
}
