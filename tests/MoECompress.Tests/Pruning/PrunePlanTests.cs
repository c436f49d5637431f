using System.Text.Json.Nodes;
using MoECompress.Compression.Calibration;
using MoECompress.Compression.Pruning;
using MoECompress.Formats.Families;
using MoECompress.Tests.Calibration;
using MoECompress.Tests.Importance;

namespace MoECompress.Tests.Pruning;

/// <summary>Pruning plans (dry runs) from hand-made profiles saved for the tiny checkpoints.</summary>
public sealed class PrunePlanTests
{
    private static string SaveProfile(string model, Func<int, long[]> counts, long tokens, string? dataFile = null,
        Func<int, double[]>? maxAbs = null)
    {
        using var checkpoint = ModelCheckpoint.Open(model);
        var profile = HandMadeStatistics.ProfileFor(checkpoint.MoE, counts, tokens, dataFile, maxAbs);
        return profile.Save(TinyCalibrationModel.NewPath("profile"));
    }

    private static PruneReport DryRun(string model, string profile, int? keep = null, double? ratio = null, bool global = false,
        bool allowSuper = false, string? output = null) =>
        Pruner.Run(new PruneOptions
        {
            Model = model, Output = output, DryRun = true, Keep = keep, Ratio = ratio, Method = "frequency", Global = global,
            AllowSuperExperts = allowSuper, Profile = new ProfileRequest { Profile = profile },
        });

    [Fact]
    public void SuperExpertsAreProtectedUnlessAllowed()
    {
        // Layer 0, expert 3: the least selected but with by far the largest output (a super expert).
        var profile = SaveProfile(TinyCalibrationModel.Mixtral,
            l => l == 0 ? [300, 300, 300, 100, 300, 250, 250, 200] : [250, 250, 250, 250, 250, 250, 250, 250], 1000,
            maxAbs: l => Enumerable.Range(0, 8).Select(e => l == 0 && e == 3 ? 1000.0 : 1.0).ToArray());
        var loaded = CalibrationProfile.Load(profile);
        Assert.True(loaded.SuperExperts.IsSuper(0, 3));

        var report = DryRun(TinyCalibrationModel.Mixtral, profile, keep: 6);
        var layer0 = report.Layers.Single(l => l.Layer == 0);
        Assert.Equal([0, 1, 2, 3, 4, 5], layer0.Kept.Select(k => k.Original));
        Assert.Equal([3], layer0.Protected);
        Assert.True(layer0.Kept.Single(k => k.Original == 3).Protected);
        Assert.Equal([6, 7], layer0.Removed.Select(r => r.Original));
        Assert.Contains(report.Notes, n => n.Contains("super expert"));

        var allowed = DryRun(TinyCalibrationModel.Mixtral, profile, keep: 6, allowSuper: true);
        Assert.Equal([0, 1, 2, 4, 5, 6], allowed.Layers.Single(l => l.Layer == 0).Kept.Select(k => k.Original));
        Assert.False(allowed.SuperExpertsProtected);
    }

    [Fact]
    public void DeepSeekPlansRemoveTheSameNumberFromEveryGroupAndCutTheMtpLayer()
    {
        // The four least selected experts (0..3) are all in group 0; group-limited routing needs one removal per group.
        long[] counts = [10, 11, 12, 13, 60, 50, 40, 30, 70, 65, 55, 45, 80, 75, 64, 80];
        var profile = SaveProfile(PruningTestModels.DeepSeekColdGroups, _ => counts, 200);
        var dry = TinyCalibrationModel.NewPath("dry");
        var report = DryRun(PruningTestModels.DeepSeekColdGroups, profile, keep: 12, output: dry);
        Assert.False(Directory.Exists(dry));
        Assert.True(report.DryRun);
        Assert.Null(report.Surgery);
        Assert.Equal(4, report.Groups);
        Assert.Equal(12, report.OutputExperts);

        var decoder = report.Layers.Where(l => !l.IsMtp).ToList();
        Assert.Equal([1, 2, 3], decoder.Select(l => l.Layer));
        foreach (var layer in decoder)
        {
            Assert.Equal([0, 7, 11, 14], layer.Removed.Select(r => r.Original));
            Assert.Equal(Enumerable.Range(0, 12), layer.Kept.Select(k => k.New!.Value));
            Assert.Equal(counts[layer.Kept[5].Original] / 200.0, layer.Kept[5].Score, 12);
            Assert.Contains("per group", layer.Rule);
        }

        var mtp = Assert.Single(report.Layers, l => l.IsMtp);
        Assert.Equal(4, mtp.Layer);
        Assert.Equal(RouterRowNorms.ScoreName, mtp.ScoreName);
        Assert.Equal(12, mtp.Kept.Count);
        Assert.All(Enumerable.Range(0, 4), g => Assert.Equal(1, mtp.Removed.Count(r => r.Original / 4 == g)));
        Assert.Contains(report.Notes, n => n.Contains("MTP") && n.Contains("router rows"));
        Assert.Contains(report.Notes, n => n.Contains("shared experts"));

        var json = JsonNode.Parse(report.ToJson())!;
        Assert.True(json["dry_run"]!.GetValue<bool>());
        Assert.Equal("loaded", json["profile"]!["source"]!.GetValue<string>());
        Assert.Equal(4, json["layers"]!.AsArray().Count);
        Assert.Contains("(MTP)", report.ToMarkdown());
    }

    [Fact]
    public void GlobalRankingIsEqualisedToTheLargestLayerCount()
    {
        // Normalised frequencies n/2000: layer 0 has six weak experts (0.01, 0.02), layers 1–3 four weak ones (0.05, 0.055,
        // ~0.06). Removing 16 of 32: layer 0 loses six (down to top-k = 2), layers 1 and 2 four each, layer 3 its two weakest.
        var profile = SaveProfile(TinyCalibrationModel.Mixtral, l => l switch
        {
            0 => [900, 900, 40, 40, 40, 40, 20, 20],
            1 => [400, 400, 400, 400, 100, 100, 100, 100],
            2 => [390, 390, 390, 390, 110, 110, 110, 110],
            _ => [380, 380, 380, 380, 118, 119, 121, 122],
        }, 1000);
        var report = DryRun(TinyCalibrationModel.Mixtral, profile, ratio: 0.5, global: true);
        var g = report.GlobalSummary!;
        Assert.Equal(new Dictionary<int, int> { [0] = 2, [1] = 4, [2] = 4, [3] = 6 }, g.LayerKeep.OrderBy(kv => kv.Key).ToDictionary());
        Assert.Equal(6, g.OutputExperts);
        Assert.Equal(6, report.OutputExperts);
        Assert.Equal(16, g.RequestedRemoved);
        Assert.Equal(16, g.GlobalRemoved);
        Assert.Equal(0.5, g.RequestedReduction);
        Assert.Equal(0.25, g.AchievedReduction);
        Assert.Equal(4 + 2 + 2, g.ExtraKept);

        var layer0 = report.Layers[0];
        Assert.Equal(2, layer0.GlobalKeep);
        Assert.Equal(4, layer0.ExtraKept);
        Assert.Equal([2, 3, 4, 5], layer0.Kept.Where(k => k.EqualisationExtra).Select(k => k.Original));
        Assert.Equal([6, 7], report.Layers[3].Kept.Skip(4).Select(k => k.Original));
        Assert.DoesNotContain(report.Layers[3].Kept, k => k.EqualisationExtra);

        var json = JsonNode.Parse(report.ToJson())!;
        Assert.Equal("global", json["mode"]!.GetValue<string>());
        Assert.Equal(0.25, json["global"]!["achieved_reduction"]!.GetValue<double>());
        Assert.Equal(2, json["global"]!["layer_keep"]!["0"]!.GetValue<int>());
        var markdown = report.ToMarkdown();
        Assert.Contains("E' = 6", markdown);
        Assert.Contains("| 0 | 2 | 6 | 4 |", markdown);
    }

    [Fact]
    public void ATaskProfileKeepsThatTasksExpertsAndTheReportNamesItsData()
    {
        var code = SaveProfile(TinyCalibrationModel.Mixtral, _ => [400, 350, 300, 250, 200, 150, 100, 250], 1000, "/data/code.jsonl");
        var prose = SaveProfile(TinyCalibrationModel.Mixtral, _ => [100, 150, 200, 250, 300, 350, 400, 250], 1000, "/data/prose.jsonl");
        var forCode = DryRun(TinyCalibrationModel.Mixtral, code, keep: 4);
        var forProse = DryRun(TinyCalibrationModel.Mixtral, prose, keep: 4);
        Assert.All(forCode.Layers, l => Assert.Equal([0, 1, 2, 3], l.Kept.Select(k => k.Original)));
        Assert.All(forProse.Layers, l => Assert.Equal([3, 4, 5, 6], l.Kept.Select(k => k.Original)));
        Assert.Equal(["/data/code.jsonl"], forCode.Profile.Data!.Files);
        Assert.Contains("code.jsonl", forCode.ToMarkdown());
        Assert.Contains("prose.jsonl", forProse.ToJson());
        Assert.Equal(Path.GetFullPath(code), forCode.Profile.Path);
    }
}
