using System.Text.Json.Nodes;
using MoECompress.Compression.Surgery;
using MoECompress.Formats.Families;
using MoECompress.Formats.Safetensors;
using MoECompress.Formats.Synthetic;
using MoECompress.Tests.Families;
using static TorchSharp.torch;

namespace MoECompress.Tests.Surgery;

/// <summary>Pruning every synthetic preset to a feasible expert count: a loadable, consistent checkpoint.</summary>
public class ExpertSurgeryPruneTests
{
    public static IEnumerable<object[]> Presets => SyntheticCheckpoint.Presets.Select(p => new object[] { p });

    [Theory]
    [MemberData(nameof(Presets))]
    public void Pruned_preset_reloads_with_consistent_experts_routers_and_config(string preset)
    {
        using var dir = new TempDirectory();
        string inDir = dir.Sub("in"), outDir = dir.Sub("out");
        SyntheticCheckpoint.Write(preset, inDir, new SyntheticOptions { Seed = 11 });
        var before = SurgeryFixtures.HashFiles(inDir);

        using (var input = ModelCheckpoint.Open(inDir))
        {
            var cfg = input.MoE;
            int target = SurgeryFixtures.PruneTarget(cfg);
            var plan = SurgeryFixtures.PrunePlan(input, target);
            var lines = new List<string>();
            var result = ExpertSurgery.Write(input, plan, outDir, new ExpertSurgeryOptions { FlushToDisk = false },
                new SyncProgress(lines));

            Assert.Equal(cfg.NumExperts, result.InputExperts);
            Assert.Equal(target, result.OutputExperts);
            Assert.True(result.OutputTensorBytes < result.InputTensorBytes);
            Assert.Contains(lines, l => l.StartsWith($"layer {plan.Layers.Keys.Min()}:", StringComparison.Ordinal));

            using var output = ModelCheckpoint.Open(outDir);
            Assert.Equal(result.TensorsWritten, output.Tensors.Names.Count);
            AssertConfig(input, output, target);
            Assert.Equal(input.MtpLayersPresent, output.MtpLayersPresent);
            AssertTensors(input, output, plan);
            AssertExpertWeights(input, output, plan);
            AssertManifest(outDir, plan, cfg.NumExperts);
            Assert.True(File.Exists(Path.Combine(outDir, "tokenizer_config.json")));
            Assert.True(File.Exists(Path.Combine(outDir, "generation_config.json")));
        }
        Assert.Equal(before, SurgeryFixtures.HashFiles(inDir));
    }

    private static void AssertConfig(ModelCheckpoint input, ModelCheckpoint output, int target)
    {
        var cfg = input.MoE;
        Assert.Equal(target, output.MoE.NumExperts);
        Assert.Equal(cfg.TopK, output.MoE.TopK);
        Assert.Equal(cfg.Family, output.MoE.Family);
        Assert.NotEmpty(cfg.ExpertCountKeys);
        foreach (var key in cfg.ExpertCountKeys)
            Assert.Equal(target, ConfigKeys.Get(output.Config, key)!.GetValue<int>());
        foreach (var key in cfg.TopKKeys)
            Assert.Equal(ConfigKeys.Get(input.Config, key)!.ToJsonString(), ConfigKeys.Get(output.Config, key)!.ToJsonString());
        var expected = (JsonObject)input.Config.DeepClone();
        foreach (var key in cfg.ExpertCountKeys) ConfigKeys.Set(expected, key, target);
        Assert.True(JsonNode.DeepEquals(expected, output.Config), "config.json differs beyond the expert-count keys");
    }

    private static void AssertTensors(ModelCheckpoint input, ModelCheckpoint output, ExpertSurgeryPlan plan)
    {
        var cfg = input.MoE;
        int target = plan.OutputExperts;
        var inSrc = input.Tensors;
        var outSrc = output.Tensors;
        int perExpertIn = 0, perExpertOut = 0;
        foreach (var name in inSrc.Names)
        {
            var role = input.Classify(name);
            if (role.Role == TensorRole.RoutedExpert && !role.Fused) { perExpertIn++; continue; }
            if (role.Role is TensorRole.RoutedExpert or TensorRole.RouterWeight or TensorRole.RouterBias or TensorRole.CorrectionBias) continue;
            Assert.True(outSrc.Contains(name), $"non-routed tensor '{name}' is missing from the output");
        }
        foreach (var name in outSrc.Names)
        {
            var role = output.Classify(name);
            var info = outSrc.GetInfo(name);
            switch (role.Role)
            {
                case TensorRole.RoutedExpert when !role.Fused:
                    perExpertOut++;
                    Assert.InRange(role.Expert!.Value, 0, target - 1);
                    break;
                case TensorRole.RoutedExpert:
                case TensorRole.RouterWeight:
                case TensorRole.RouterBias:
                case TensorRole.CorrectionBias:
                {
                    var inInfo = inSrc.GetInfo(name);
                    Assert.Equal(inInfo.DType, info.DType);
                    Assert.Equal([target, .. inInfo.Shape[1..]], info.Shape);
                    if (role.Role == TensorRole.RouterWeight) Assert.Equal([target, (long)cfg.HiddenSize], info.Shape);
                    if (role.Role is TensorRole.RouterBias or TensorRole.CorrectionBias) Assert.Equal([(long)target], info.Shape);
                    // Every row / slab k is the representative's bytes.
                    long inRow = inInfo.ByteLength / cfg.NumExperts;
                    var list = plan.Layers[role.Layer!.Value];
                    var outBytes = outSrc.GetBytes(name);
                    var inBytes = inSrc.GetBytes(name);
                    for (int k = 0; k < target; k++)
                        Assert.True(outBytes.Slice((int)(k * inRow), (int)inRow).SequenceEqual(inBytes.Slice((int)(list[k].Representative * inRow), (int)inRow)),
                            $"'{name}' row {k} is not expert {list[k].Representative}'s");
                    break;
                }
                default:
                {
                    var inInfo = inSrc.GetInfo(name);
                    Assert.Equal(inInfo.DType, info.DType);
                    Assert.Equal(inInfo.Shape, info.Shape);
                    Assert.True(inSrc.GetBytes(name).SequenceEqual(outSrc.GetBytes(name)), $"'{name}' changed");
                    break;
                }
            }
        }
        Assert.Equal(perExpertIn / cfg.NumExperts * target, perExpertOut);
        // Routers, correction biases and router biases of every routed layer, by the adapter's names.
        foreach (var l in plan.Layers.Keys)
        {
            Assert.Equal([target, (long)cfg.HiddenSize], outSrc.GetInfo(output.Family.RouterWeightName(l, output.MoE)).Shape);
            if (output.Family.CorrectionBiasName(l, output.MoE) is { } cb && cfg.HasCorrectionBias)
                Assert.Equal([(long)target], outSrc.GetInfo(cb).Shape);
            if (output.Family.RouterBiasName(l, output.MoE) is { } rb)
                Assert.Equal([(long)target], outSrc.GetInfo(rb).Shape);
        }
    }

    private static void AssertExpertWeights(ModelCheckpoint input, ModelCheckpoint output, ExpertSurgeryPlan plan)
    {
        foreach (var (layer, list) in plan.Layers)
        {
            for (int k = 0; k < list.Count; k++)
            {
                foreach (var proj in new[] { ExpertProjection.Gate, ExpertProjection.Up, ExpertProjection.Down })
                {
                    using var scope = NewDisposeScope();
                    var expected = input.LoadExpert(layer, list[k].Representative, proj);
                    var actual = output.LoadExpert(layer, k, proj);
                    SurgeryFixtures.AssertEqual(expected, actual, $"layer {layer} expert {k} {proj}");
                    var bIn = ExpertWeights.LoadBias(input.Tensors, input.Family, input.MoE, layer, list[k].Representative, proj);
                    var bOut = ExpertWeights.LoadBias(output.Tensors, output.Family, output.MoE, layer, k, proj);
                    Assert.Equal(bIn is null, bOut is null);
                    if (bIn is not null) SurgeryFixtures.AssertEqual(bIn, bOut!, $"layer {layer} expert {k} {proj} bias");
                }
            }
        }
    }

    private static void AssertManifest(string outDir, ExpertSurgeryPlan plan, int inputExperts)
    {
        var manifest = CheckpointManifest.Read(outDir).Json;
        Assert.Equal("prune", manifest["operation"]!.GetValue<string>());
        var map = manifest["expert_map"]!.AsObject();
        Assert.Equal(inputExperts, map["input_experts"]!.GetValue<int>());
        Assert.Equal(plan.OutputExperts, map["output_experts"]!.GetValue<int>());
        foreach (var (layer, list) in plan.Layers)
        {
            var entry = map["layers"]![layer.ToString()]!;
            var newToOld = entry["new_to_old"]!.AsArray();
            Assert.Equal(list.Count, newToOld.Count);
            for (int k = 0; k < list.Count; k++)
            {
                Assert.Equal(list[k].Representative, newToOld[k]!["representative"]!.GetValue<int>());
                Assert.Equal([k], entry["old_to_new"]![list[k].Representative.ToString()]!.AsArray().Select(x => x!.GetValue<int>()));
            }
            int dropped = Enumerable.Range(0, inputExperts).First(e => list.All(o => o.Representative != e));
            Assert.Empty(entry["old_to_new"]![dropped.ToString()]!.AsArray());
        }
    }

    [Fact]
    public void Fp8_expert_weights_keep_their_scale_companions_and_refuse_merging()
    {
        using var dir = new TempDirectory();
        string synth = dir.Sub("synth"), fp8 = dir.Sub("fp8"), outDir = dir.Sub("out");
        SyntheticCheckpoint.Write("deepseek-v3", synth, new SyntheticOptions { Seed = 5 });
        Fp8Fixture.Write(synth, fp8);

        using var input = ModelCheckpoint.Open(fp8);
        var cfg = input.MoE;
        int target = SurgeryFixtures.PruneTarget(cfg);
        var plan = SurgeryFixtures.PrunePlan(input, target);
        ExpertSurgery.Write(input, plan, outDir, new ExpertSurgeryOptions { FlushToDisk = false });

        using var output = ModelCheckpoint.Open(outDir);
        int scales = 0;
        foreach (var (layer, list) in plan.Layers)
        {
            for (int k = 0; k < list.Count; k++)
            {
                foreach (var proj in new[] { ExpertProjection.Gate, ExpertProjection.Up, ExpertProjection.Down })
                {
                    var inName = input.Family.ExpertTensor(layer, list[k].Representative, proj, cfg).TensorName;
                    var outName = output.Family.ExpertTensor(layer, k, proj, output.MoE).TensorName;
                    Assert.Equal(SafetensorsDType.F8_E4M3, output.Tensors.GetInfo(outName).DType);
                    Assert.True(input.Tensors.GetBytes(inName).SequenceEqual(output.Tensors.GetBytes(outName)));
                    Assert.True(input.Tensors.GetBytes(inName + "_scale_inv").SequenceEqual(output.Tensors.GetBytes(outName + "_scale_inv")),
                        $"scale of '{outName}' is not the representative's");
                    scales++;
                    using var scope = NewDisposeScope();
                    SurgeryFixtures.AssertEqual(input.LoadExpert(layer, list[k].Representative, proj), output.LoadExpert(layer, k, proj),
                        $"dequantized layer {layer} expert {k} {proj}");
                }
            }
        }
        Assert.Equal(plan.Layers.Count * target * 3, scales);
        Assert.Equal(plan.Layers.Count * target * 3, output.Tensors.Names.Count(n => n.EndsWith("_scale_inv", StringComparison.Ordinal)));

        var merged = new OutputExpert(0, [0, 1], [1.0, 1.0], Merged: true);
        var experts = new List<OutputExpert> { merged };
        experts.AddRange(Enumerable.Range(2, cfg.NumExperts - 2).Take(target - 1).Select(OutputExpert.Copy));
        var mergePlan = SurgeryFixtures.SamePlanEveryLayer(input, experts, "merge", new ConstantMergedWeights(input));
        var error = Assert.Throws<MoECompress.Formats.Errors.MoeCompressException>(() =>
            ExpertSurgery.Write(input, mergePlan, dir.Sub("merged")));
        Assert.Equal(MoECompress.Formats.Errors.ErrorKind.Infeasible, error.Kind);
        Assert.Contains("dequantize first", error.Message);
        SurgeryFixtures.AssertNoOutput(dir.Sub("merged"));
    }

    [Fact]
    public void Sharded_output_has_an_index_and_the_manifest_merges_extra_properties()
    {
        using var dir = new TempDirectory();
        string inDir = dir.Sub("in"), outDir = dir.Sub("out");
        SyntheticCheckpoint.Write("qwen3-moe", inDir, new SyntheticOptions { Seed = 2 });
        using var input = ModelCheckpoint.Open(inDir);
        var plan = SurgeryFixtures.PrunePlan(input, 8);
        var options = new ExpertSurgeryOptions
        {
            FlushToDisk = false,
            MaxShardBytes = 200_000,
            ManifestProperties = new JsonObject
            {
                ["scores"] = new JsonObject { ["method"] = "reap" },
                ["options"] = new JsonObject { ["experts"] = 8 },
            },
        };
        var result = ExpertSurgery.Write(input, plan, outDir, options);
        Assert.True(File.Exists(Path.Combine(outDir, SafetensorsIndex.FileName)));
        Assert.True(Directory.GetFiles(outDir, "*.safetensors").Length > 1);
        var manifest = CheckpointManifest.Read(outDir);
        Assert.Equal("reap", manifest.Json["scores"]!["method"]!.GetValue<string>());
        Assert.Equal(8, manifest.Options!["experts"]!.GetValue<int>());
        Assert.NotNull(manifest.Json["expert_map"]);
        using var output = ModelCheckpoint.Open(outDir);
        Assert.Equal(8, output.MoE.NumExperts);
        Assert.Equal(result.TensorsWritten, output.Tensors.Names.Count);

        // Overwrite replaces the output; without it the existing folder is an Io error.
        var again = Assert.Throws<MoECompress.Formats.Errors.MoeCompressException>(() => ExpertSurgery.Write(input, plan, outDir));
        Assert.Equal(MoECompress.Formats.Errors.ErrorKind.Io, again.Kind);
        var smaller = SurgeryFixtures.PrunePlan(input, 6);
        ExpertSurgery.Write(input, smaller, outDir, new ExpertSurgeryOptions { Overwrite = true, FlushToDisk = false });
        using var replaced = ModelCheckpoint.Open(outDir);
        Assert.Equal(6, replaced.MoE.NumExperts);
    }

    /// <summary>An IProgress that records synchronously (Progress&lt;T&gt; posts to the thread pool).</summary>
    private sealed class SyncProgress(List<string> lines) : IProgress<string>
    {
        public void Report(string value) => lines.Add(value);
    }
}
