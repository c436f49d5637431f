using System.Text.Json.Nodes;
using MoECompress.Compression.Calibration;
using MoECompress.Compression.Data;
using MoECompress.Compression.Pruning;
using MoECompress.Formats.Families;
using MoECompress.Tests.Calibration;

namespace MoECompress.Tests.Pruning;

/// <summary>Pruning written through ExpertSurgery: experts that no calibration token selects can go without changing the logits.</summary>
public sealed class PruneEndToEndTests
{
    /// <summary>The calibration sequences a request draws (the same draw the pruner makes).</summary>
    private static IReadOnlyList<int[]> CalibrationSequences(string model, ProfileRequest request)
    {
        using var checkpoint = ModelCheckpoint.Open(model);
        return CalibrationPass.LoadTokens(checkpoint, request.Data, request.DataOptions).Sequences;
    }

    private static void AssertSameLogits(float[][] expected, float[][] actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (var s = 0; s < expected.Length; s++)
        {
            Assert.Equal(expected[s].Length, actual[s].Length);
            var scale = expected[s].Max(Math.Abs);
            var worst = expected[s].Zip(actual[s], (a, b) => Math.Abs(a - b)).Max();
            Assert.True(worst <= 1e-5f * Math.Max(1f, scale), $"sequence {s}: logits differ by {worst} (largest |logit| {scale})");
        }
    }

    [Fact]
    public void RemovingNeverSelectedDeepSeekExpertsLeavesLogitsUnchanged()
    {
        var model = PruningTestModels.DeepSeekColdGroups;
        var request = new ProfileRequest { Data = PruningTestModels.WriteTokenData("ds-tokens", 3, 40, 21), Samples = 4, SeqLen = 16 };
        var output = TinyCalibrationModel.NewPath("ds-pruned");
        var lines = new List<string>();
        var report = Pruner.Run(new PruneOptions { Model = model, Output = output, Keep = 12, Method = "frequency", Profile = request },
            new InlineProgress(lines.Add));

        Assert.Equal(Path.GetFullPath(output), report.Output);
        foreach (var layer in report.Layers.Where(l => !l.IsMtp))
        {
            Assert.Equal(PruningTestModels.DeepSeekColdExperts, layer.Removed.Select(r => r.Original));
            Assert.All(layer.Removed, r => Assert.Equal(0.0, r.Score));
        }
        Assert.Equal("calibrated", report.Profile.Kind);
        Assert.Equal(64, report.Profile.Tokens);
        var sizes = report.Surgery!;
        Assert.Equal(16, sizes.InputExperts);
        Assert.Equal(12, sizes.OutputExperts);
        Assert.True(sizes.OutputTensorBytes < sizes.InputTensorBytes);
        Assert.Contains(lines, l => l.Contains("frequency"));

        using (var pruned = ModelCheckpoint.Open(output))
        {
            Assert.Equal(12, pruned.MoE.NumExperts);
            Assert.Equal(12, pruned.Config["n_routed_experts"]!.GetValue<int>());
        }
        var manifest = JsonNode.Parse(File.ReadAllText(Path.Combine(output, "moe-compress-manifest.json")))!;
        Assert.Equal("prune", manifest["operation"]!.GetValue<string>());
        Assert.Equal("frequency", manifest["prune"]!["method"]!.GetValue<string>());
        Assert.Equal(12, manifest["prune"]!["output_experts"]!.GetValue<int>());

        var sequences = CalibrationSequences(model, request);
        AssertSameLogits(PruningTestModels.Logits(model, sequences), PruningTestModels.Logits(output, sequences));
    }

    [Fact]
    public void RemovingExpertsTheCalibrationTokensNeverSelectLeavesTheirLogitsUnchanged()
    {
        // Three tokens route to at most 3 × 2 = 6 of the 8 experts of each layer: two or more are never selected.
        var model = TinyCalibrationModel.Mixtral;
        var request = new ProfileRequest { Data = PruningTestModels.WriteTokenData("mx-tokens", 1, 12, 5), Samples = 1, SeqLen = 3 };
        var output = TinyCalibrationModel.NewPath("mx-pruned");
        var report = Pruner.Run(new PruneOptions { Model = model, Output = output, Ratio = 0.25, Method = "frequency", Profile = request });

        Assert.Equal(6, report.OutputExperts);
        Assert.All(report.Layers, l => Assert.All(l.Removed, r => Assert.Equal(0.0, r.Score)));
        using (var pruned = ModelCheckpoint.Open(output))
            Assert.Equal(6, pruned.MoE.NumExperts);

        var sequences = CalibrationSequences(model, request);
        AssertSameLogits(PruningTestModels.Logits(model, sequences), PruningTestModels.Logits(output, sequences));
    }

    private sealed class InlineProgress(Action<string> report) : IProgress<string>
    {
        public void Report(string value) => report(value);
    }
}
