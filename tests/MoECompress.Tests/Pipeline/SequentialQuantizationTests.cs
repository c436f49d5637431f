using System.Diagnostics;
using MoECompress.Compression.Pipeline;
using MoECompress.Compression.Quantization;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Families;
using MoECompress.Formats.Safetensors;
using MoECompress.Formats.Synthetic;
using MoECompress.Tests.Calibration;
using MoECompress.Tests.Quantization;

namespace MoECompress.Tests.Pipeline;

/// <summary>
/// The sequential GPTQ pipeline: per-layer Hessians collected in expert chunks give the same output as one pass; the
/// propagation mode only changes what the layers after the first see; the memory planner refuses impossible budgets
/// before any work.
/// </summary>
public sealed class SequentialQuantizationTests
{
    private static QuantizeOptions Options(string name) => new()
    {
        Model = TinyCalibrationModel.Mixtral, Output = TinyCalibrationModel.NewPath(name), GroupSize = 32, Bits = 3, Uniform = true,
        Method = QuantizeMethod.Gptq, Profile = QuantizeTestData.Profile,
    };

    private static Dictionary<string, byte[]> Tensors(string dir)
    {
        using var c = SafetensorsCheckpoint.Open(dir);
        return c.Names.ToDictionary(n => n, n => c.GetBytes(n).ToArray());
    }

    [Fact]
    public void One_expert_per_chunk_gives_the_same_bytes_as_the_whole_layer_at_once()
    {
        var whole = Quantizer.Run(Options("seq-whole"));
        var chunked = Quantizer.Run(Options("seq-chunked") with { MaxExpertsPerChunk = 1 });
        Assert.Equal(8, whole.Memory!.ExpertsPerChunk);
        Assert.Equal(1, chunked.Memory!.ExpertsPerChunk);
        var a = Tensors(whole.Output!);
        var b = Tensors(chunked.Output!);
        Assert.Equal(a.Keys.Order(), b.Keys.Order());
        foreach (var (name, bytes) in a) Assert.True(bytes.AsSpan().SequenceEqual(b[name]), $"tensor {name} differs between chunkings");
    }

    [Fact]
    public void Compressed_propagation_changes_only_the_layers_after_the_first()
    {
        var compressed = Tensors(Quantizer.Run(Options("seq-compressed")).Output!);
        var original = Tensors(Quantizer.Run(Options("seq-original") with { Propagate = Propagation.Original }).Output!);
        bool Same(string name) => compressed[name].AsSpan().SequenceEqual(original[name]);
        var experts = compressed.Keys.Where(n => n.Contains(".experts.", StringComparison.Ordinal)).ToList();
        // Layer 0 sees the embeddings either way; later layers see the quantized or the original layers' outputs.
        Assert.All(experts.Where(n => n.StartsWith("model.layers.0.", StringComparison.Ordinal)), n => Assert.True(Same(n), n));
        Assert.Contains(experts.Where(n => !n.StartsWith("model.layers.0.", StringComparison.Ordinal)), n => !Same(n));
        Assert.All(compressed.Keys.Where(n => !n.Contains(".experts.", StringComparison.Ordinal)), n => Assert.True(Same(n), n));
    }

    [Fact]
    public void A_budget_below_the_smallest_stage_fails_before_any_calibration()
    {
        var clock = Stopwatch.StartNew();
        var ex = Assert.Throws<MoeCompressException>(() => Quantizer.Run(Options("seq-budget") with { MaxMemoryBytes = 200_000_000 }));
        Assert.Equal(ErrorKind.Infeasible, ex.Kind);
        Assert.Contains("--max-memory 200 MB", ex.Message);
        Assert.Contains("biggest item", ex.Message);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(20), $"took {clock.Elapsed}");
        Assert.False(Directory.Exists(Options("x").Output));
    }

    [Fact]
    public void The_planner_names_the_down_proj_Hessian_at_Mixtral_width_and_chunks_experts_to_fit()
    {
        var config = ReferenceConfigs.Load(ReferenceConfigs.Names.Single(n => n.StartsWith("Mixtral", StringComparison.Ordinal)));
        var (_, moe) = FamilyRegistry.Read(config, "config.json");
        var shape = new MemoryPlan.Shape
        {
            MoE = moe, LayerWeightBytes = 8L * 3 * 4096 * 14336 * 4 + 4L * 4096 * 4096 * 4, Tokens = 128 * 512, MicroBatchTokens = 2048,
            HessianKinds = [Compression.Calibration.HessianKind.Input, Compression.Calibration.HessianKind.Down],
        };
        // One Mixtral down_proj Hessian is 14336² float32 = 822 MB.
        var roomy = MemoryPlan.Create([("gptq", shape)], 64L << 30);
        Assert.Equal(8, roomy.ExpertsPerChunk);
        Assert.Contains(roomy.Stages[0].Items, i => i.Name.StartsWith("down_proj Hessian", StringComparison.Ordinal) && i.Bytes == 14336L * 14336 * 4);
        var tight = MemoryPlan.Create([("gptq", shape)], 16L << 30);
        Assert.InRange(tight.ExpertsPerChunk, 1, 7);
        Assert.True(tight.PeakBytes <= 16L << 30);
        var ex = Assert.Throws<MoeCompressException>(() => MemoryPlan.Create([("gptq", shape)], 6L << 30));
        Assert.Equal(ErrorKind.Infeasible, ex.Kind);
        Assert.Contains("one decoder layer's weights in float32", ex.Message); // the biggest single item at this budget
    }

    [Theory]
    [InlineData(Propagation.Compressed, false)]
    [InlineData(Propagation.Original, false)]
    [InlineData(Propagation.Compressed, true)]
    public void Releasing_the_layer_during_the_solves_gives_the_same_bytes_as_holding_it(Propagation propagate, bool mixed)
    {
        QuantizeOptions Run(string name, bool release)
        {
            var o = Options(name) with { MaxExpertsPerChunk = 3, Propagate = propagate, ReleaseLayerForSolves = release };
            return mixed ? o with { Uniform = false, Bits = 3, Candidates = [2, 4] } : o;
        }
        var held = Quantizer.Run(Run("seq-held", false));
        var released = Quantizer.Run(Run("seq-released", true));
        Assert.False(held.Memory!.ReleasesLayerForSolves);
        Assert.True(released.Memory!.ReleasesLayerForSolves);
        Assert.True(released.Memory.PeakBytes <= held.Memory.PeakBytes, $"{released.Memory.PeakBytes} vs {held.Memory.PeakBytes}");
        var a = Tensors(held.Output!);
        var b = Tensors(released.Output!);
        Assert.Equal(a.Keys.Order(), b.Keys.Order());
        foreach (var (name, bytes) in a) Assert.True(bytes.AsSpan().SequenceEqual(b[name]), $"tensor {name} differs when the layer is released");
        // No spill file is left behind.
        Assert.Empty(Directory.GetFiles(Path.GetTempPath(), $"moe-compress-experts-{Environment.ProcessId}-*"));
    }

    [Fact]
    public void At_Mixtral_widths_releasing_the_layer_meets_one_layers_expert_weights_plus_1_GB()
    {
        // The bound of the sequential pipeline: one layer's routed experts in float32 + calibration activations + 1 GB
        // (Mixtral: 8 x 3 x 4096 x 14336 x 4 B = 5.64 GB, 1,024 tokens x 4096 x 4 B = 16.8 MB).
        var config = ReferenceConfigs.Load(ReferenceConfigs.Names.Single(n => n.StartsWith("Mixtral", StringComparison.Ordinal)));
        var (_, moe) = FamilyRegistry.Read(config, "config.json");
        long experts32 = 8L * 3 * 4096 * 14336 * 4, rest = 4L * 4096 * 4096 * 4 / 4 * 3;
        var shape = new MemoryPlan.Shape
        {
            MoE = moe, LayerWeightBytes = experts32 + rest, LayerWeightBytes16BitExperts = experts32 / 2 + rest,
            Tokens = 8 * 128, MicroBatchTokens = 2048, CanReleaseLayer = true,
            HessianKinds = [Compression.Calibration.HessianKind.Input, Compression.Calibration.HessianKind.Down],
        };
        var bound = experts32 + 8L * 128 * 4096 * 4 + 1_000_000_000;
        var plan = MemoryPlan.Create([("gptq", shape)], bound);
        Assert.True(plan.ReleasesLayerForSolves);
        Assert.True(plan.HoldExpertsAt16Bit);
        Assert.True(plan.PeakBytes <= bound);
        var layer = Assert.Single(plan.Stages[0].Items, i => i.Name.StartsWith("one decoder layer's weights", StringComparison.Ordinal));
        Assert.Equal(MemoryPlan.ForwardPhase, layer.Phase);
        // Holding the layer throughout cannot meet it; with room to spare the layer is held (no reloads).
        Assert.Throws<MoeCompressException>(() => MemoryPlan.Create([("gptq", shape)], bound, releaseLayer: false));
        Assert.False(MemoryPlan.Create([("gptq", shape)], 64L << 30).ReleasesLayerForSolves);
        // A stage that cannot release its layer never plans as if it did.
        Assert.Throws<MoeCompressException>(() => MemoryPlan.Create([("gptq", shape with { CanReleaseLayer = false })], bound));
        // MC-MoE sensitivity keeps the chunk's experts for its measurements while the layer is released.
        var sensitivity = MemoryPlan.Create([("sensitivity", shape with { KeepsBlockInputs = true, SolvesNeedChunkExperts = true })], bound);
        Assert.Contains(sensitivity.Stages[0].Items, i => i.Name.StartsWith("the chunk's experts' weights", StringComparison.Ordinal) && i.Phase == MemoryPlan.SolvePhase);
    }

    [Fact]
    public void The_sensitivity_plan_counts_the_replacement_held_beside_the_widest_solve_only_when_the_hidden_side_is_wider()
    {
        // MC-MoE sensitivity quantizes down_proj first: at Mixtral widths (I 14336 > H 4096) the widest solve runs with
        // nothing of the replacement held; at Qwen3-30B-A3B widths (H 2048 > I 768) up_proj is solved last, beside the
        // dequantized down_proj and gate_proj (2 x 2048 x 768 x 4 B).
        foreach (var (name, held) in new[] { ("Mixtral", 0L), ("Qwen3-30B", 2L * 2048 * 768 * 4) })
        {
            var config = ReferenceConfigs.Load(ReferenceConfigs.Names.Single(n => n.StartsWith(name, StringComparison.Ordinal)));
            var (_, moe) = FamilyRegistry.Read(config, "config.json");
            var shape = new MemoryPlan.Shape
            {
                MoE = moe, LayerWeightBytes = 1L << 30, Tokens = 1024, MicroBatchTokens = 2048, KeepsBlockInputs = true,
                SolvesBuildReplacements = true,
                HessianKinds = [Compression.Calibration.HessianKind.Input, Compression.Calibration.HessianKind.Down],
            };
            var stage = MemoryPlan.Create([("sensitivity", shape)], 64L << 30).Stages[0];
            var replacement = stage.Items.Where(i => i.Name.StartsWith("the quantized replacement", StringComparison.Ordinal)).ToList();
            Assert.Equal(held, replacement.Sum(i => i.Total));
            Assert.All(replacement, i => Assert.Equal(MemoryPlan.SolvePhase, i.Phase));
            var without = MemoryPlan.Create([("gptq", shape with { SolvesBuildReplacements = false })], 64L << 30).Stages[0];
            long Solves(MemoryStage st) => st.Items.Where(i => i.Phase == MemoryPlan.SolvePhase).Sum(i => i.Total);
            Assert.Equal(held, Solves(stage) - Solves(without));
        }
    }

    [Fact]
    public void The_planner_never_adds_the_forward_activations_to_the_GPTQ_working_set()
    {
        // Mixtral widths, as `benchmark scale --fixture mixtral` measured them: GPTQ solves a chunk after the forward pass.
        var config = ReferenceConfigs.Load(ReferenceConfigs.Names.Single(n => n.StartsWith("Mixtral", StringComparison.Ordinal)));
        var (_, moe) = FamilyRegistry.Read(config, "config.json");
        var shape = new MemoryPlan.Shape
        {
            MoE = moe, LayerWeightBytes = 8L * 3 * 4096 * 14336 * 4, Tokens = 8 * 128, MicroBatchTokens = 2048,
            HessianKinds = [Compression.Calibration.HessianKind.Input, Compression.Calibration.HessianKind.Down],
        };
        var stage = MemoryPlan.Create([("gptq", shape)], 64L << 30).Stages[0];
        var always = stage.Items.Where(i => i.Phase is null).Sum(i => i.Total);
        var forward = Assert.Single(stage.Items, i => i.Phase == MemoryPlan.ForwardPhase);
        var solves = Assert.Single(stage.Items, i => i.Phase == MemoryPlan.SolvePhase);
        Assert.StartsWith("one micro-batch's activations", forward.Name, StringComparison.Ordinal);
        Assert.Equal(MemoryPlan.GptqWorkingSetBytes(4096, 14336), solves.Total);
        Assert.Equal(always + Math.Max(forward.Total, solves.Total), stage.Peak);
        // Without Hessians (RTN, pruning) the activations are held throughout.
        var rtn = MemoryPlan.Create([("rtn", shape with { HessianKinds = [] })], 64L << 30).Stages[0];
        Assert.All(rtn.Items, i => Assert.Null(i.Phase));
        Assert.Equal(rtn.Items.Sum(i => i.Total), rtn.Peak);
    }

    [Fact]
    public void The_planner_holds_experts_at_16_bits_only_when_that_fits_more_of_them_per_chunk()
    {
        // Qwen3-30B-A3B widths: one layer's 128 experts are 2.4 GB in float32, 1.2 GB in bf16.
        var config = ReferenceConfigs.Load(ReferenceConfigs.Names.Single(n => n.StartsWith("Qwen3-30B", StringComparison.Ordinal)));
        var (_, moe) = FamilyRegistry.Read(config, "config.json");
        long experts32 = 128L * 3 * 2048 * 768 * 4, rest = 4L * 2048 * 4096 * 4;
        var shape = new MemoryPlan.Shape
        {
            MoE = moe, LayerWeightBytes = experts32 + rest, LayerWeightBytes16BitExperts = experts32 / 2 + rest,
            Tokens = 16 * 256, MicroBatchTokens = 2048,
            HessianKinds = [Compression.Calibration.HessianKind.Input, Compression.Calibration.HessianKind.Down],
        };
        var roomy = MemoryPlan.Create([("gptq", shape)], 16L << 30);
        Assert.False(roomy.HoldExpertsAt16Bit);
        Assert.Equal(128, roomy.ExpertsPerChunk);
        // 3.5 GB: float32 leaves room for no expert's Hessians, 16 bits for several.
        var tight = MemoryPlan.Create([("gptq", shape)], 3_500_000_000);
        Assert.True(tight.HoldExpertsAt16Bit);
        Assert.True(tight.ExpertsPerChunk > 1, $"{tight.ExpertsPerChunk} per chunk");
        Assert.True(tight.PeakBytes <= 3_500_000_000);
        Assert.Contains(tight.Stages[0].Items, i => i.Name.Contains("16-bit", StringComparison.Ordinal) && i.Bytes == experts32 / 2 + rest);
        Assert.Throws<MoeCompressException>(() => MemoryPlan.Create([("gptq", shape)], 3_500_000_000, hold16Bit: false));
        // Nothing stored at 16 bits: never held.
        Assert.False(MemoryPlan.Create([("gptq", shape with { LayerWeightBytes16BitExperts = null })], 16L << 30).HoldExpertsAt16Bit);
    }

    [Fact]
    public void Experts_held_at_16_bits_give_the_same_bytes_as_float32_with_original_propagation()
    {
        // A bf16 checkpoint (the synthesized Mixtral layout): widening bf16 to float32 is exact, so the Hessians, and so
        // the GPTQ output, are the same; with compressed propagation only the rounding of what later layers see differs.
        var model = TinyCalibrationModel.NewPath("seq-bf16");
        SyntheticCheckpoint.Write("mixtral", model, new SyntheticOptions { Seed = 5 });
        Cli.FamilyPipelineTests.WriteWordTokenizer(model);
        using (var checkpoint = ModelCheckpoint.Open(model))
        {
            using var layer = new Compression.Model.ModelEngine(checkpoint) { HoldExpertsAt16Bit = true }.LoadLayer(0);
            Assert.Equal(TorchSharp.torch.ScalarType.BFloat16, layer.MoE!.Experts[0].Gate.dtype);
            Assert.Equal(TorchSharp.torch.ScalarType.Float32, layer.MoE.Router.Weight.dtype);
        }
        QuantizeOptions Bf16(string name, bool hold, Propagation propagate) => Options(name) with
        {
            Model = model, HoldExpertsAt16Bit = hold, Propagate = propagate,
        };
        var f32 = Quantizer.Run(Bf16("seq-bf16-f32", false, Propagation.Original));
        var held = Quantizer.Run(Bf16("seq-bf16-held", true, Propagation.Original));
        Assert.False(f32.Memory!.HoldExpertsAt16Bit);
        Assert.True(held.Memory!.HoldExpertsAt16Bit);
        Assert.True(held.Memory.PeakBytes < f32.Memory.PeakBytes);
        var a = Tensors(f32.Output!);
        var b = Tensors(held.Output!);
        foreach (var (name, bytes) in a) Assert.True(bytes.AsSpan().SequenceEqual(b[name]), $"tensor {name} differs when experts are held at 16 bits");
        var compressed = Quantizer.Run(Bf16("seq-bf16-held-compressed", true, Propagation.Compressed));
        Assert.True(compressed.Memory!.HoldExpertsAt16Bit);
    }

    /// <summary>SHA-256 of every shard and the bytes of config.json (the manifest's timestamp is the only other difference).</summary>
    private static (string Shards, string Config) Fingerprint(string dir)
    {
        var manifest = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(dir, CheckpointManifest.FileName)))!;
        return (manifest["shards"]!.ToJsonString(), File.ReadAllText(Path.Combine(dir, "config.json")));
    }

    [Theory]
    [InlineData("layer 0:", false)]
    [InlineData("layer 2:", false)]
    [InlineData("pass 2 of 2: layer 1:", true)]
    public void A_run_stopped_after_a_layer_resumes_to_the_same_bytes(string stopAfter, bool mixed)
    {
        var baseOptions = Options(mixed ? "resume-ref-mixed" : "resume-ref") with { MaxExpertsPerChunk = 3 };
        if (mixed) baseOptions = baseOptions with { Uniform = false, Bits = 3, Candidates = [2, 4] };
        var reference = Fingerprint(Quantizer.Run(baseOptions).Output!);

        var output = TinyCalibrationModel.NewPath("resume-out");
        var options = baseOptions with { Output = output };
        using var cts = new CancellationTokenSource();
        var progress = new StopAfter(stopAfter, cts);
        Assert.ThrowsAny<OperationCanceledException>(() => Quantizer.Run(options, progress, cts.Token));
        Assert.False(Directory.Exists(output));
        var partial = CheckpointWriter.PartialDirectory(output);
        Assert.True(Directory.Exists(partial));

        // Without --resume the leftover is named, never reused; with it the run continues and commits.
        var refused = Assert.Throws<MoeCompressException>(() => Quantizer.Run(options));
        Assert.Equal(ErrorKind.Io, refused.Kind);
        Assert.Contains(partial, refused.Message);
        var lines = new List<string>();
        var resumed = Quantizer.Run(options with { Resume = true }, new Collect(lines));
        Assert.Contains(lines, l => l.StartsWith("resuming", StringComparison.Ordinal));
        Assert.False(Directory.Exists(partial));
        Assert.Equal(reference, Fingerprint(resumed.Output!));
    }

    /// <summary>Cancels the run once a progress line starting with the given text has been reported (Ctrl+C after a layer).</summary>
    private sealed class StopAfter(string prefix, CancellationTokenSource cts) : IProgress<string>
    {
        public void Report(string value)
        {
            if (value.StartsWith(prefix, StringComparison.Ordinal)) cts.Cancel();
        }
    }

    private sealed class Collect(List<string> lines) : IProgress<string>
    {
        public void Report(string value) => lines.Add(value);
    }
}
