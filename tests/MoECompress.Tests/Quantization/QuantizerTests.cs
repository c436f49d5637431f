using System.Text.Json.Nodes;
using MoECompress.Compression.Calibration;
using MoECompress.Compression.Evaluation;
using MoECompress.Compression.Model;
using MoECompress.Compression.Quantization;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Families;
using MoECompress.Formats.Quantized;
using MoECompress.Formats.Safetensors;
using MoECompress.Formats.Synthetic;
using MoECompress.Tests.Calibration;
using static TorchSharp.torch;

namespace MoECompress.Tests.Quantization;

/// <summary>The <c>quantize</c> pipeline (<see cref="Quantizer.Run"/>) end to end on tiny models.</summary>
public sealed class QuantizerTests
{
    private static QuantizeOptions Options(string model, string name) => new()
    {
        Model = model, Output = TinyCalibrationModel.NewPath(name), GroupSize = 32, Profile = QuantizeTestData.Profile,
    };

    /// <summary>Most distinct values in any (row, group of <paramref name="group"/> columns) of a weight.</summary>
    private static int MaxDistinctPerGroup(Tensor w, int group)
    {
        var rows = w.shape[0];
        var values = w.contiguous().data<float>().ToArray();
        var cols = (int)w.shape[1];
        var max = 0;
        for (var r = 0; r < rows; r++)
            for (var g = 0; g < cols; g += group)
                max = Math.Max(max, values.Skip(r * cols + g).Take(Math.Min(group, cols - g)).Distinct().Count());
        return max;
    }

    [Theory]
    [InlineData(BitAllocationGranularity.Expert)]
    [InlineData(BitAllocationGranularity.Layer)]
    public void MixedPrecisionGptqOutputReopensRunsAndKeepsRouters(BitAllocationGranularity granularity)
    {
        var model = TinyCalibrationModel.Mixtral;
        var options = Options(model, "mixed") with { Bits = 3.0, Candidates = [2, 4], Granularity = granularity };
        var lines = new List<string>();
        var report = Quantizer.Run(options, new SyncProgress(lines.Add));

        // Allocation within the budget; layer granularity gives one width per layer; the super expert is pinned.
        Assert.NotNull(report.Allocation);
        Assert.True(report.AverageBits <= 3.0 + 1e-9, $"average {report.AverageBits}");
        Assert.True(report.AverageBits > 2.0);
        Assert.Equal(new[] { 0, 1, 2, 3 }, report.Layers);
        if (granularity == BitAllocationGranularity.Layer)
            Assert.All(report.Widths.Values, w => Assert.Single(w.Distinct()));
        else
            Assert.Equal(4, report.Widths[TinyCalibrationModel.MixtralBoostedLayer][TinyCalibrationModel.MixtralBoostedExpert]);
        Assert.Contains(lines, l => l.StartsWith("sensitivity: layer 3", StringComparison.Ordinal));

        // Predicted size is what was written.
        Assert.Equal(report.PredictedBytes, report.ActualBytes);
        using (var raw = SafetensorsCheckpoint.Open(report.Output!))
            Assert.Equal(report.PredictedBytes, raw.Names.Sum(n => raw.GetInfo(n).ByteLength));

        using var input = ModelCheckpoint.Open(model);
        using var output = ModelCheckpoint.Open(report.Output!);
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(report.Output!, "config.json")))!.AsObject();
        Assert.Equal("gptq", config["quantization_config"]!["quant_method"]!.GetValue<string>());

        // Routers (and every other copied tensor) byte-identical; experts replaced by packed modules.
        foreach (var l in input.MoE.MoELayerIndices())
        {
            var router = input.Family.RouterWeightName(l, input.MoE);
            Assert.True(input.Tensors.GetBytes(router).SequenceEqual(output.Tensors.GetBytes(router)), router);
        }
        var embed = "model.embed_tokens.weight";
        Assert.True(input.Tensors.GetBytes(embed).SequenceEqual(output.Tensors.GetBytes(embed)));

        // Each expert holds at most 2^b distinct values per row and group: its allocated width was written.
        foreach (var (l, e) in new[] { (0, 0), (1, 5), (3, 7), (TinyCalibrationModel.MixtralBoostedLayer, TinyCalibrationModel.MixtralBoostedExpert) })
        {
            using var w = output.LoadExpert(l, e, ExpertProjection.Down);
            var bits = report.Widths[l][e];
            Assert.InRange(MaxDistinctPerGroup(w, 32), 2, 1 << bits);
        }

        // The output runs: perplexity and KL against the input on held-out ids.
        // (The tiny model's 256-row vocabulary is smaller than its borrowed tokenizer, so the engines run on ids directly.)
        var tokens = TinyCalibrationModel.RandomSequences(1, 96, 256, seed: 3)[0];
        var quantized = new ModelEngine(output.Tensors, output.Family, output.MoE, output.Config, output.ConfigPath);
        var original = new ModelEngine(input.Tensors, input.Family, input.MoE, input.Config, input.ConfigPath);
        var metrics = Evaluator.Measure(quantized, original, tokens, new EvaluationSettings(32, 16));
        Assert.True(double.IsFinite(metrics.Perplexity));
        Assert.True(metrics.MeanKl is > 0 and < 1, $"KL {metrics.MeanKl}");

        // Reports render.
        var json = JsonNode.Parse(report.ToJson())!;
        Assert.Equal(report.PredictedBytes, json["size"]!["predicted_bytes"]!.GetValue<long>());
        Assert.Equal(32, json["widths"]!.AsObject().Sum(kv => kv.Value!.AsArray().Count));
        Assert.Contains("| layer | 0 | 1 |", report.ToMarkdown());
    }

    [Fact]
    public void UniformRtnGivesEveryExpertTheSameWidthWithoutCalibration()
    {
        var model = TinyCalibrationModel.Mixtral;
        var report = Quantizer.Run(Options(model, "uniform") with
        {
            Bits = 4, Uniform = true, Method = QuantizeMethod.Rtn, Format = QuantizedFormat.Dequantized,
            Profile = new ProfileRequest { Data = Path.Combine(TinyCalibrationModel.NewPath("missing"), "no-data.jsonl") },
        });
        Assert.Null(report.Allocation);
        Assert.Null(report.Sensitivity);
        Assert.All(report.Widths.Values, w => Assert.All(w, b => Assert.Equal(4, b)));
        Assert.Equal(new Dictionary<int, int> { [4] = 32 }, report.WidthCounts());
        Assert.Equal(4.0, report.AverageBits);
        Assert.DoesNotContain("profile", report.Seconds.Keys);

        // Dequantized output: same tensors and sizes as the input, no quantization_config, Ŵ equal to RTN of the original.
        Assert.Equal(report.InputBytes, report.ActualBytes);
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(report.Output!, "config.json")))!.AsObject();
        Assert.False(config.ContainsKey("quantization_config"));
        using var input = ModelCheckpoint.Open(model);
        using var output = ModelCheckpoint.Open(report.Output!);
        using var original = input.LoadExpert(2, 6, ExpertProjection.Up);
        using var q = RtnQuantizer.Quantize(original, new QuantizationScheme(4, 32));
        using var expected = q.Dequantize();
        using var written = output.LoadExpert(2, 6, ExpertProjection.Up);
        Assert.True(expected.equal(written).all().item<bool>(), "dequantized expert differs from RTN of the original");
    }

    [Fact]
    public void ColdExpertsFallBackToRtnAndAreReported()
    {
        var model = TinyCalibrationModel.DeepSeekV3;
        var report = Quantizer.Run(Options(model, "cold") with
        {
            Bits = 3, Uniform = true, Format = QuantizedFormat.CompressedTensors, SharedExpertBits = 8,
        });
        using var checkpoint = ModelCheckpoint.Open(model);
        var moeLayers = checkpoint.MoE.MoELayerIndices().ToArray();
        foreach (var l in moeLayers)
        {
            var cold = Assert.Single(report.ColdExperts, c => c.Layer == l && c.Expert == TinyCalibrationModel.DeepSeekColdExpert);
            Assert.Equal("rtn", cold.Method);
        }
        Assert.Contains(report.Notes, n => n.Contains("RTN", StringComparison.Ordinal) && n.Contains("too few", StringComparison.Ordinal));
        Assert.True(report.OtherQuantizedModules > 0);
        Assert.Contains("| layer | expert | routed tokens |", report.ToMarkdown());
        Assert.Equal(report.PredictedBytes, report.ActualBytes);

        using var output = ModelCheckpoint.Open(report.Output!);
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(report.Output!, "config.json")))!.AsObject();
        Assert.Equal("compressed-tensors", config["quantization_config"]!["quant_method"]!.GetValue<string>());
        // The cold expert was written (RTN) and reads back at 3 bits.
        using var w = output.LoadExpert(moeLayers[0], TinyCalibrationModel.DeepSeekColdExpert, ExpertProjection.Gate);
        Assert.InRange(MaxDistinctPerGroup(w, 32), 2, 8);
        // Routers and the correction bias are untouched.
        var bias = checkpoint.Family.CorrectionBiasName(moeLayers[0], checkpoint.MoE)!;
        Assert.True(checkpoint.Tensors.GetBytes(bias).SequenceEqual(output.Tensors.GetBytes(bias)));
    }

    [Fact]
    public void FusedExpertsNeedDequantizedOutputAndAreRewrittenInPlace()
    {
        var model = TinyCalibrationModel.NewPath("qwen3-fused");
        SyntheticCheckpoint.Write("qwen3-moe-fused", model, new SyntheticOptions { Seed = 5 });
        var packed = Assert.Throws<MoeCompressException>(() => Quantizer.Run(Options(model, "fused-gptq") with
        {
            Bits = 4, Uniform = true, Method = QuantizeMethod.Rtn,
        }));
        Assert.Equal(ErrorKind.Usage, packed.Kind);
        Assert.Contains("fused", packed.Message);
        Assert.Contains("--format dequantized", packed.Message);

        var report = Quantizer.Run(Options(model, "fused") with
        {
            Bits = 2, Uniform = true, Method = QuantizeMethod.Rtn, Format = QuantizedFormat.Dequantized,
        });
        Assert.Equal(report.InputBytes, report.ActualBytes);
        using var input = ModelCheckpoint.Open(model);
        using var output = ModelCheckpoint.Open(report.Output!);
        foreach (var (l, e, p) in new[] { (0, 0, ExpertProjection.Gate), (1, 7, ExpertProjection.Up), (2, 15, ExpertProjection.Down) })
        {
            using var scope = NewDisposeScope();
            var original = input.LoadExpert(l, e, p);
            using var q = RtnQuantizer.Quantize(original, new QuantizationScheme(2, 32));
            var expected = q.Dequantize().to(ScalarType.BFloat16).to(ScalarType.Float32);
            Assert.True(expected.equal(output.LoadExpert(l, e, p)).all().item<bool>(), $"layer {l} expert {e} {p}");
        }
        var router = input.Family.RouterWeightName(0, input.MoE);
        Assert.True(input.Tensors.GetBytes(router).SequenceEqual(output.Tensors.GetBytes(router)));
    }

    [Fact]
    public void BadBudgetsAndOptionsFailBeforeAnyWork()
    {
        var model = TinyCalibrationModel.Mixtral;
        // Calibration data that does not exist: reaching calibration would fail differently.
        var noData = new ProfileRequest { Data = Path.Combine(TinyCalibrationModel.NewPath("missing"), "none.jsonl") };
        QuantizeOptions O(string name) => Options(model, name) with { Profile = noData };

        var low = Assert.Throws<MoeCompressException>(() => Quantizer.Run(O("low") with { Bits = 1.5 }));
        Assert.Equal(ErrorKind.Infeasible, low.Kind);
        Assert.Contains("--bits 1.5", low.Message);

        var small = Assert.Throws<MoeCompressException>(() => Quantizer.Run(O("small") with { Size = 1000 }));
        Assert.Equal(ErrorKind.Infeasible, small.Kind);
        Assert.Contains("--size 1000", small.Message);
        Assert.Contains("smallest possible output", small.Message);

        Assert.Equal(ErrorKind.Usage, Assert.Throws<MoeCompressException>(() => Quantizer.Run(O("both") with { Bits = 3, Size = 10_000_000 })).Kind);
        var oneBit = Assert.Throws<MoeCompressException>(() => Quantizer.Run(O("one") with { Bits = 2, Candidates = [1, 2, 4] }));
        Assert.Equal(ErrorKind.Usage, oneBit.Kind);
        Assert.Contains("--format dequantized", oneBit.Message);
        Assert.Equal(ErrorKind.Usage, Assert.Throws<MoeCompressException>(() => Quantizer.Run(O("frac") with { Bits = 2.5, Uniform = true })).Kind);
        Assert.Equal(ErrorKind.Usage, Assert.Throws<MoeCompressException>(() =>
            Quantizer.Run(O("deq-size") with { Size = 10_000_000, Format = QuantizedFormat.Dequantized })).Kind);

        var existing = TinyCalibrationModel.NewPath("exists");
        Directory.CreateDirectory(existing);
        var io = Assert.Throws<MoeCompressException>(() => Quantizer.Run(O("x") with { Output = existing, Bits = 3 }));
        Assert.Equal(ErrorKind.Io, io.Kind);
        Assert.Empty(Directory.GetFileSystemEntries(existing));
        Assert.Equal(ErrorKind.Usage, Assert.Throws<MoeCompressException>(() => Quantizer.Run(O("self") with { Output = model, Bits = 3 })).Kind);
    }

    [Fact]
    public void DryRunPredictsTheSizeFromAByteBudgetAndWritesNothing()
    {
        var options = Options(TinyCalibrationModel.Mixtral, "dry") with { Method = QuantizeMethod.Rtn, DryRun = true, Candidates = [2, 3, 4] };
        // Uniform dry runs need no calibration: the sizes of all-2-bit and all-4-bit outputs.
        var all2 = Quantizer.Run(options with { Bits = 2, Uniform = true }).PredictedBytes;
        var all4 = Quantizer.Run(options with { Bits = 4, Uniform = true }).PredictedBytes;
        Assert.True(all2 < all4);
        var budget = (all2 + all4) / 2;

        var report = Quantizer.Run(options with { Size = budget });
        Assert.True(report.DryRun);
        Assert.Null(report.ActualBytes);
        Assert.False(Directory.Exists(options.Output));
        Assert.InRange(report.PredictedBytes, all2 + 1, budget);
        Assert.Equal("bytes", report.Allocation!.Unit);
        Assert.Equal(report.PredictedBytes, (long)report.Allocation.Used);
        Assert.True(report.WidthCounts().Count > 1, "a budget halfway between 2 and 4 bits mixes widths");
        Assert.NotNull(report.Sensitivity);
    }

    private sealed class SyncProgress(Action<string> report) : IProgress<string>
    {
        public void Report(string value) => report(value);
    }
}
