using MoECompress.Tests.Infrastructure;
using System.Text.Json.Nodes;
using MoECompress.Compression.Calibration;
using MoECompress.Compression.Merging;
using MoECompress.Compression.Model;
using MoECompress.Compression.Surgery;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Families;
using MoECompress.Tests.Calibration;
using static TorchSharp.torch;

namespace MoECompress.Tests.Merging;

public class MergerTests
{
    /// <summary>Calibration sequences as input_ids within the tiny models' 256-token vocabulary.</summary>
    private static readonly Lazy<string> TokenData = new(() =>
    {
        var path = TinyCalibrationModel.NewPath("merge-tokens") + ".jsonl";
        var lines = TinyCalibrationModel.RandomSequences(12, 64, 256, 17)
            .Select(ids => new JsonObject { ["input_ids"] = new JsonArray(ids.Select(i => (JsonNode?)JsonValue.Create(i)).ToArray()) }.ToJsonString());
        File.WriteAllLines(path, lines);
        return path;
    });

    private static ProfileRequest SmallProfile => new() { Data = TokenData.Value, Samples = 4, SeqLen = 32, MicroBatch = 512 };

    private static MergeOptions Options(string model, string? output, double? ratio = 0.5) => new()
    {
        Model = model,
        Output = output,
        Ratio = ratio,
        Profile = SmallProfile,
        RouterSamples = 2,
    };

    private static void AssertRuns(string dir, int experts)
    {
        using var checkpoint = ModelCheckpoint.Open(dir);
        Assert.Equal(experts, checkpoint.MoE.NumExperts);
        using var model = new ModelEngine(checkpoint).LoadResident();
        using var scope = NewDisposeScope();
        var logits = model.Forward(TinyCalibrationModel.RandomSequences(1, 16, 200, 1)[0]);
        Assert.True(logits.isfinite().all().item<bool>());
    }

    [Fact]
    public void Merge_writes_a_loadable_model_and_reports_clusters_ranks_and_router_errors()
    {
        var output = TinyCalibrationModel.NewPath("merge-mixtral");
        var options = Options(TinyCalibrationModel.Mixtral, output) with
        {
            Method = MergeMethod.Subspace, Clustering = ClusteringMethod.KMeans, Energy = 0.9, Whiten = true,
        };
        var report = Merger.Run(options);

        AssertRuns(output, 4);
        Assert.Equal(8, report.InputExperts);
        Assert.Equal(4, report.OutputExperts);
        Assert.False(report.DryRun);
        Assert.NotNull(report.Surgery);
        Assert.True(report.Surgery!.OutputTensorBytes < report.Surgery.InputTensorBytes);
        Assert.Equal(4, report.Layers.Count);
        foreach (var layer in report.Layers)
        {
            Assert.Equal(4, layer.Clusters.Count);
            Assert.Equal(Enumerable.Range(0, 8), layer.Clusters.SelectMany(c => c.Members).Order());
            Assert.Equal("measured", layer.RouterRowBasis);
            Assert.NotNull(layer.RepresentativeError);
            Assert.NotNull(layer.WeightedError);
            Assert.True(layer.MeasuredTokens > 0);
            var better = layer.WeightedError < layer.RepresentativeError ? RouterRowRule.Weighted : RouterRowRule.Representative;
            Assert.Equal(better, layer.RouterRow);
            foreach (var c in layer.Clusters.Where(c => c.Members.Count > 1))
            {
                Assert.NotNull(c.Projections);
                Assert.Equal(3, c.Projections!.Count);
                Assert.All(c.Projections.Values, s => Assert.True(s.Whitened && s.EnergyKept >= 0.9 && s.RankKept <= s.FullRank));
                Tolerance.Close(1.0, c.Weights.Sum(), Tolerance.Double);
            }
        }
        // Layer 0 expert 3 was boosted into a super expert: it stays alone.
        Assert.Contains(report.SuperExpertsKeptAlone, s => s.Layer == TinyCalibrationModel.MixtralBoostedLayer && s.Expert == TinyCalibrationModel.MixtralBoostedExpert);
        foreach (var s in report.SuperExpertsKeptAlone)
            Assert.Contains(report.Layers.Single(l => l.Layer == s.Layer).Clusters, c => c.Members.SequenceEqual([s.Expert]) && c.SuperExpert);

        var json = JsonNode.Parse(report.ToJson())!.AsObject();
        Assert.Equal("merge", (string?)json["operation"]);
        Assert.Equal("kmeans", (string?)json["clustering"]);
        Assert.Equal(4, json["layers"]!.AsArray().Count);
        Assert.NotNull(json["layers"]![0]!["error_weighted"]);
        Assert.Contains("## Router rows per layer", report.ToMarkdown());
        var manifest = JsonNode.Parse(File.ReadAllText(Path.Combine(output, "moe-compress-manifest.json")))!.AsObject();
        Assert.NotNull(manifest["merge"]);
        Assert.Equal(4, (int?)manifest["merge"]!["output_experts"]);
        // No merge cache is left beside the output.
        Assert.Empty(Directory.GetFileSystemEntries(Path.GetDirectoryName(output)!, "." + Path.GetFileName(output) + ".*"));
    }

    [Fact]
    public void DeepSeek_groups_MTP_layers_and_correction_biases_survive_a_merge()
    {
        var output = TinyCalibrationModel.NewPath("merge-deepseek");
        var report = Merger.Run(Options(TinyCalibrationModel.DeepSeekV3, output, ratio: null) with { Keep = 8, Method = MergeMethod.Subspace });

        AssertRuns(output, 8);
        using var input = ModelCheckpoint.Open(TinyCalibrationModel.DeepSeekV3);
        var groupSize = input.MoE.NumExperts / input.MoE.NumGroups;
        Assert.Contains(report.Layers, l => l.Mtp && l.Features == "router_rows");
        foreach (var layer in report.Layers)
            for (var k = 0; k < layer.Clusters.Count; k++)
            {
                var groups = layer.Clusters[k].Members.Select(m => m / groupSize).Distinct().ToList();
                Assert.Single(groups);
                Assert.Equal(k / (8 / input.MoE.NumGroups), groups[0]);
            }
        // Subspace without truncation (the default energy) keeps every direction.
        Assert.All(report.Layers.SelectMany(l => l.Clusters).Where(c => c.Projections is not null).SelectMany(c => c.Projections!.Values),
            s => Assert.Equal(s.FullRank, s.RankKept));
    }

    [Fact]
    public void Dry_run_reports_the_clusters_and_writes_nothing()
    {
        var output = TinyCalibrationModel.NewPath("merge-dry");
        var report = Merger.Run(Options(TinyCalibrationModel.Mixtral, output) with { DryRun = true, Ratio = 0.25 });
        Assert.True(report.DryRun);
        Assert.Null(report.Surgery);
        Assert.Equal(6, report.OutputExperts);
        Assert.All(report.Layers, l => Assert.Equal(6, l.Clusters.Count));
        // Balanced hierarchical clustering by default: 8 experts into 6 clusters, at most 2 per cluster.
        Assert.All(report.Layers.SelectMany(l => l.Clusters), c => Assert.InRange(c.Members.Count, 1, 2));
        Assert.Equal("balanced", (string?)JsonNode.Parse(report.ToJson())!["max_cluster_size"]);
        // Compressed propagation (the default) merges each layer to feed the next, so even a dry run knows what the merges kept;
        // with original propagation a dry run reads no expert weights.
        Assert.All(report.Layers.SelectMany(l => l.Clusters), c => Assert.Equal(c.Members.Count > 1, c.Projections is not null));
        var original = Merger.Run(Options(TinyCalibrationModel.Mixtral, output) with
        {
            DryRun = true, Ratio = 0.25, Propagate = Compression.Quantization.Propagation.Original,
        });
        Assert.All(original.Layers.SelectMany(l => l.Clusters), c => Assert.Null(c.Projections));
        Assert.False(Directory.Exists(output));
        Assert.False(File.Exists(output));
        Assert.Empty(Directory.GetFileSystemEntries(Path.GetDirectoryName(output)!, "*" + Path.GetFileName(output) + "*"));
    }

    [Fact]
    public void Infeasible_counts_fail_before_any_calibration()
    {
        // The calibration data does not exist: reaching calibration would be a Usage error, not Infeasible.
        var missingData = SmallProfile with { Data = TinyCalibrationModel.NewPath("no-such-data") };
        var topK = Assert.Throws<MoeCompressException>(() =>
            Merger.Run(Options(TinyCalibrationModel.Mixtral, TinyCalibrationModel.NewPath("x"), ratio: null) with { Keep = 1, Profile = missingData }));
        Assert.Equal(ErrorKind.Infeasible, topK.Kind);
        Assert.Contains("--keep", topK.Message);
        var ratio = Assert.Throws<MoeCompressException>(() =>
            Merger.Run(Options(TinyCalibrationModel.Mixtral, TinyCalibrationModel.NewPath("x"), ratio: 0.9) with { Profile = missingData }));
        Assert.Equal(ErrorKind.Infeasible, ratio.Kind);
        Assert.Contains("--ratio", ratio.Message);
        var groups = Assert.Throws<MoeCompressException>(() =>
            Merger.Run(Options(TinyCalibrationModel.DeepSeekV3, TinyCalibrationModel.NewPath("x"), ratio: null) with { Keep = 6, Profile = missingData }));
        Assert.Equal(ErrorKind.Infeasible, groups.Kind);
        Assert.Contains("n_group", groups.Message);
    }

    [Fact]
    public void Bad_options_are_usage_errors()
    {
        var model = TinyCalibrationModel.Mixtral;
        var output = TinyCalibrationModel.NewPath("bad");
        void Usage(MergeOptions o, string fragment)
        {
            var ex = Assert.Throws<MoeCompressException>(() => Merger.Run(o));
            Assert.Equal(ErrorKind.Usage, ex.Kind);
            Assert.Contains(fragment, ex.Message);
        }
        Usage(Options(model, output) with { Keep = 4 }, "exactly one of --ratio");
        Usage(Options(model, output, ratio: null), "exactly one of --ratio");
        Usage(Options(model, output, ratio: 1.0), "--ratio 1");
        Usage(Options(model, output) with { Method = MergeMethod.Average, Energy = 0.9 }, "subspace only");
        var subspace = Options(model, output) with { Method = MergeMethod.Subspace };
        Usage(subspace with { Rank = 4, Energy = 0.9 }, "not both");
        Usage(subspace with { Energy = 0 }, "--energy 0");
        Usage(subspace with { Rank = 0 }, "--rank 0");
        Usage(Options(model, null), "--output");
        Usage(Options(TinyCalibrationModel.NewPath("no-model"), output), "model folder not found");
        Usage(Options(model, Path.Combine(model, "inside")), "must not be the model folder");
        Usage(Options(model, output, ratio: 0.01), "nothing to merge");

        var existing = TinyCalibrationModel.NewPath("exists");
        Directory.CreateDirectory(existing);
        var io = Assert.Throws<MoeCompressException>(() => Merger.Run(Options(model, existing)));
        Assert.Equal(ErrorKind.Io, io.Kind);
    }

    [Fact]
    public void Whitening_from_a_saved_profile_collects_the_Hessians_layer_by_layer()
    {
        // Profiles hold statistics only; whitened merging collects each layer's input Hessians while that layer runs.
        using var checkpoint = ModelCheckpoint.Open(TinyCalibrationModel.Mixtral);
        var profile = ProfileProvider.LoadOrCollect(checkpoint, SmallProfile with { Samples = 2 });
        var saved = profile.Save(TinyCalibrationModel.NewPath("profile-stats-only"));
        var report = Merger.Run(Options(TinyCalibrationModel.Mixtral, TinyCalibrationModel.NewPath("w"))
            with { Method = MergeMethod.Subspace, Energy = 0.9, Whiten = true, Profile = SmallProfile with { Profile = saved } });
        var merged = report.Layers.SelectMany(l => l.Clusters).Where(c => c.Members.Count > 1).ToList();
        Assert.NotEmpty(merged);
        Assert.All(merged, c => Assert.All(c.Projections!.Values, s => Assert.True(s.Whitened)));
    }
}
