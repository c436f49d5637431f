using MoECompress.Compression.Surgery;
using MoECompress.Formats.Families;
using MoECompress.Formats.Safetensors;
using MoECompress.Formats.Synthetic;
using MoECompress.Tests.Families;
using static TorchSharp.torch;

namespace MoECompress.Tests.Surgery;

/// <summary>Merged experts and weighted router rows: exactly the supplied weights, Σ w·row for the router.</summary>
public class ExpertSurgeryMergeTests
{
    private static readonly ExpertProjection[] Projections = [ExpertProjection.Gate, ExpertProjection.Up, ExpertProjection.Down];

    [Fact]
    public void Mixtral_merge_writes_supplied_weights_and_weighted_router_rows()
    {
        using var dir = new TempDirectory();
        string inDir = dir.Sub("in"), outDir = dir.Sub("out");
        SyntheticCheckpoint.Write("mixtral", inDir, new SyntheticOptions { Seed = 3 });
        using var input = ModelCheckpoint.Open(inDir);
        var experts = new List<OutputExpert>
        {
            new(1, [1, 3], [1.0, 3.0], RouterRowRule.Weighted, Merged: true),
            OutputExpert.Copy(5),
            new(2, [0, 2, 4], [1.0, 1.0, 2.0], RouterRowRule.Representative, Merged: true),
            OutputExpert.Copy(7),
            new(6, [6], [1.0], RouterRowRule.Weighted),
        };
        var weights = new RecordingMergedWeights(input);
        var plan = SurgeryFixtures.SamePlanEveryLayer(input, experts, "merge", weights);
        ExpertSurgery.Write(input, plan, outDir, new ExpertSurgeryOptions { FlushToDisk = false });

        using var output = ModelCheckpoint.Open(outDir);
        Assert.Equal(5, output.MoE.NumExperts);
        var layers = SurgeryFixtures.RoutedLayers(input);
        foreach (var layer in layers)
        {
            using var scope = NewDisposeScope();
            foreach (var proj in Projections)
            {
                foreach (int k in new[] { 0, 2 })
                {
                    var supplied = tensor(weights.Weights[(layer, k, proj)], output.LoadExpert(layer, k, proj).shape);
                    var expected = supplied.to(ScalarType.BFloat16).to(ScalarType.Float32);
                    SurgeryFixtures.AssertEqual(expected, output.LoadExpert(layer, k, proj), $"merged layer {layer} expert {k} {proj}");
                }
                foreach (int k in new[] { 1, 3, 4 })
                    SurgeryFixtures.AssertEqual(input.LoadExpert(layer, experts[k].Representative, proj), output.LoadExpert(layer, k, proj),
                        $"kept layer {layer} expert {k} {proj}");
            }

            var routerName = input.Family.RouterWeightName(layer, input.MoE);
            var inRouter = input.Tensors.ToTensor(routerName, ScalarType.Float64);
            var outRouter = output.Tensors.ToTensor(routerName);
            Assert.Equal(ScalarType.BFloat16, outRouter.dtype);
            var row0 = (inRouter[1] * 0.25 + inRouter[3] * 0.75).to(ScalarType.BFloat16);
            Assert.True(row0.allclose(outRouter[0], 0, 0), $"layer {layer}: router row 0 is not 0.25·row1 + 0.75·row3");
            Assert.True(inRouter[2].to(ScalarType.BFloat16).allclose(outRouter[2], 0, 0), $"layer {layer}: router row 2 is not row 2");
            Assert.True(inRouter[5].to(ScalarType.BFloat16).allclose(outRouter[1], 0, 0));
            Assert.True(inRouter[7].to(ScalarType.BFloat16).allclose(outRouter[3], 0, 0));
            Assert.True(inRouter[6].to(ScalarType.BFloat16).allclose(outRouter[4], 0, 0), "a one-member weighted row is the member's row");
            Assert.False(row0.allclose(inRouter[1].to(ScalarType.BFloat16), 0, 0));
        }

        // Weight is asked for merged experts only, each projection once, layer after layer.
        var weightCalls = weights.Calls.Where(c => !c.Bias).ToList();
        Assert.Equal(layers.Count * 2 * 3, weightCalls.Count);
        Assert.All(weightCalls, c => Assert.Contains(c.Expert, new[] { 0, 2 }));
        Assert.Equal(weightCalls.Count, weightCalls.Distinct().Count());
        Assert.Equal(weightCalls.Select(c => c.Layer).Order(), weightCalls.Select(c => c.Layer));

        var map = CheckpointManifest.Read(outDir).Json["expert_map"]!["layers"]![layers[0].ToString()]!;
        Assert.Equal([1, 3], map["new_to_old"]![0]!["members"]!.AsArray().Select(x => x!.GetValue<int>()));
        Assert.Equal([0.25, 0.75], map["new_to_old"]![0]!["weights"]!.AsArray().Select(x => x!.GetValue<double>()));
        Assert.True(map["new_to_old"]![0]!["merged"]!.GetValue<bool>());
        Assert.Equal([2], map["old_to_new"]!["4"]!.AsArray().Select(x => x!.GetValue<int>()));
    }

    public static IEnumerable<object[]> FusedPresets => [["qwen3-moe-fused"], ["granitemoe"], ["gpt-oss-dequantized"]];

    [Theory]
    [MemberData(nameof(FusedPresets))]
    public void Fused_layouts_take_merged_experts_in_their_own_orientation(string preset)
    {
        using var dir = new TempDirectory();
        string inDir = dir.Sub("in"), outDir = dir.Sub("out");
        if (preset == "gpt-oss-dequantized")
        {
            SyntheticCheckpoint.Write("gpt-oss", dir.Sub("mxfp4"), new SyntheticOptions { Seed = 4 });
            GptOssDequantizedFixture.Write(dir.Sub("mxfp4"), inDir);
        }
        else SyntheticCheckpoint.Write(preset, inDir, new SyntheticOptions { Seed = 4 });

        using var input = ModelCheckpoint.Open(inDir);
        Assert.True(input.MoE.FusedExperts);
        Assert.False(input.MoE.Mxfp4Experts);
        int e = input.MoE.NumExperts;
        var experts = new List<OutputExpert>
        {
            new(0, [0, 1], [2.0, 1.0], RouterRowRule.Weighted, Merged: true),
            new(3, [2, 3, 4], [1.0, 1.0, 1.0], Merged: true),
        };
        experts.AddRange(Enumerable.Range(5, e - 5).Reverse().Select(OutputExpert.Copy));
        var weights = new RecordingMergedWeights(input, new HashSet<ExpertProjection> { ExpertProjection.Down });
        var plan = SurgeryFixtures.SamePlanEveryLayer(input, experts, "merge", weights);
        ExpertSurgery.Write(input, plan, outDir, new ExpertSurgeryOptions { FlushToDisk = false });

        using var output = ModelCheckpoint.Open(outDir);
        Assert.Equal(e - 3, output.MoE.NumExperts);
        foreach (var layer in SurgeryFixtures.RoutedLayers(input))
        {
            using var scope = NewDisposeScope();
            foreach (var proj in Projections)
            {
                for (int k = 0; k < experts.Count; k++)
                {
                    var actual = output.LoadExpert(layer, k, proj);
                    if (experts[k].Merged)
                    {
                        var supplied = tensor(weights.Weights[(layer, k, proj)], actual.shape);
                        SurgeryFixtures.AssertEqual(supplied.to(ScalarType.BFloat16).to(ScalarType.Float32), actual, $"merged layer {layer} expert {k} {proj}");
                    }
                    else
                    {
                        SurgeryFixtures.AssertEqual(input.LoadExpert(layer, experts[k].Representative, proj), actual, $"kept layer {layer} expert {k} {proj}");
                    }
                    var bias = ExpertWeights.LoadBias(output.Tensors, output.Family, output.MoE, layer, k, proj);
                    if (bias is null) continue;
                    if (!experts[k].Merged)
                    {
                        SurgeryFixtures.AssertEqual(ExpertWeights.LoadBias(input.Tensors, input.Family, input.MoE, layer, experts[k].Representative, proj)!,
                            bias, $"kept bias layer {layer} expert {k} {proj}");
                    }
                    else if (proj == ExpertProjection.Down)
                    {
                        var supplied = tensor(weights.Biases[(layer, k, proj)], bias.shape);
                        SurgeryFixtures.AssertEqual(supplied.to(ScalarType.BFloat16).to(ScalarType.Float32), bias, $"supplied bias layer {layer} expert {k}");
                    }
                    else
                    {
                        // No bias supplied: the members' biases averaged with the normalised member weights.
                        var o = experts[k];
                        double sum = o.MemberWeights.Sum();
                        var expected = zeros(bias.shape, ScalarType.Float64);
                        for (int i = 0; i < o.Members.Count; i++)
                            expected += ExpertWeights.LoadBias(input.Tensors, input.Family, input.MoE, layer, o.Members[i], proj)!
                                .to(ScalarType.Float64) * (o.MemberWeights[i] / sum);
                        Assert.True(bias.to(ScalarType.Float64).allclose(expected, rtol: 1.0 / 128, atol: 1e-6),
                            $"averaged bias layer {layer} expert {k} {proj}");
                    }
                }
            }
            var router = input.Tensors.ToTensor(input.Family.RouterWeightName(layer, input.MoE), ScalarType.Float64);
            var outRouter = output.Tensors.ToTensor(output.Family.RouterWeightName(layer, output.MoE));
            Assert.True((router[0] * (2.0 / 3) + router[1] * (1.0 / 3)).to(outRouter.dtype).allclose(outRouter[0], 0, 0));
            Assert.True(router[3].to(outRouter.dtype).allclose(outRouter[1], 0, 0));
            if (input.Family.RouterBiasName(layer, input.MoE) is { } rb)
            {
                var b = input.Tensors.ToTensor(rb, ScalarType.Float64);
                var ob = output.Tensors.ToTensor(rb);
                Assert.True((b[0] * (2.0 / 3) + b[1] * (1.0 / 3)).to(ob.dtype).allclose(ob[0], 0, 0), "router bias follows the router row rule");
                Assert.True(b[3].to(ob.dtype).allclose(ob[1], 0, 0));
            }
        }
    }

    [Fact]
    public void Mxfp4_experts_refuse_merging()
    {
        using var dir = new TempDirectory();
        SyntheticCheckpoint.Write("gpt-oss", dir.Sub("in"), new SyntheticOptions { Seed = 4 });
        using var input = ModelCheckpoint.Open(dir.Sub("in"));
        Assert.True(input.MoE.Mxfp4Experts);
        var experts = new List<OutputExpert> { new(0, [0, 1], [1.0, 1.0], Merged: true) };
        experts.AddRange(Enumerable.Range(2, 4).Select(OutputExpert.Copy));
        var plan = SurgeryFixtures.SamePlanEveryLayer(input, experts, "merge", new ConstantMergedWeights(input));
        var error = Assert.Throws<MoECompress.Formats.Errors.MoeCompressException>(() => ExpertSurgery.Write(input, plan, dir.Sub("out")));
        Assert.Equal(MoECompress.Formats.Errors.ErrorKind.Infeasible, error.Kind);
        Assert.Contains("dequantize first", error.Message);
        SurgeryFixtures.AssertNoOutput(dir.Sub("out"));
    }
}
