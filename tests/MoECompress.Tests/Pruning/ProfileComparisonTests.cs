using System.Text.Json.Nodes;
using MoECompress.Compression.Calibration;
using MoECompress.Compression.Pruning;
using MoECompress.Formats.Errors;
using MoECompress.Tests.Importance;

namespace MoECompress.Tests.Pruning;

/// <summary>Overlap of the top experts of profiles calibrated on different tasks.</summary>
public sealed class ProfileComparisonTests
{
    private static CalibrationProfile Profile(string data, params long[][] counts) =>
        HandMadeStatistics.Profile(counts.Select((c, l) => HandMadeStatistics.Layer(l, c, 100)).ToList(), counts.Length, data);

    // Top-4 by frequency — code: {0,1,2,3} in both layers; prose: {2,3,4,5} in layer 0, {4,5,6,7} in layer 1;
    // math: {0,1,2,4} in layer 0, {0,1,2,3} in layer 1.
    private static readonly CalibrationProfile Code = Profile("code.jsonl", [9, 8, 7, 6, 1, 1, 1, 1], [9, 8, 7, 6, 1, 1, 1, 1]);
    private static readonly CalibrationProfile Prose = Profile("prose.jsonl", [1, 1, 9, 8, 7, 6, 1, 1], [1, 1, 1, 1, 9, 8, 7, 6]);
    private static readonly CalibrationProfile Math = Profile("math.jsonl", [9, 8, 7, 1, 6, 1, 1, 1], [6, 7, 8, 9, 1, 1, 1, 1]);

    [Fact]
    public void JaccardOfTopSetsPerLayerAndOnAverage()
    {
        var report = ProfileComparison.Compare([("code", Code), ("prose", Prose), ("math", Math)], 4, "frequency");
        Assert.Equal(2, report.Layers.Count);
        var layer0 = report.Layers[0];
        Assert.Equal([0, 1, 2, 3], layer0.TopExperts[0].Value);
        Assert.Equal([2, 3, 4, 5], layer0.TopExperts[1].Value);
        Assert.Equal(2 / 6.0, layer0.Pairs[0].Jaccard, 12);   // code/prose: {2,3} of {0..5}
        Assert.Equal(3 / 5.0, layer0.Pairs[1].Jaccard, 12);   // code/math: {0,1,2} of {0..4}
        Assert.Equal(2 / 6.0, layer0.Pairs[2].Jaccard, 12);   // prose/math: {2,4} of {0..5}
        Assert.Equal([2], layer0.Shared);
        var layer1 = report.Layers[1];
        Assert.Equal(0, layer1.Pairs[0].Jaccard);
        Assert.Equal(1, layer1.Pairs[1].Jaccard);
        Assert.Empty(layer1.Shared);

        Assert.Equal(("code", "prose"), (report.MeanOverlaps[0].First, report.MeanOverlaps[0].Second));
        Assert.Equal((2 / 6.0 + 0) / 2, report.MeanOverlaps[0].Jaccard, 12);
        Assert.Equal(2, report.MeanOverlaps[0].Common);
        Assert.Equal((3 / 5.0 + 1) / 2, report.MeanOverlaps[1].Jaccard, 12);

        var json = JsonNode.Parse(report.ToJson())!;
        Assert.Equal(0.333333, json["layers"]![0]!["pairs"]![0]!["jaccard"]!.GetValue<double>());
        Assert.Equal(3, json["profiles"]!.AsArray().Count);
        var markdown = report.ToMarkdown();
        Assert.Contains("code.jsonl", markdown);
        Assert.Contains("| code / math | 0.800 | 7 |", markdown);
    }

    [Fact]
    public void BadComparisonsAreUsageErrors()
    {
        Assert.Equal(ErrorKind.Usage, Assert.Throws<MoeCompressException>(() => ProfileComparison.Compare([("code", Code)], 4, "frequency")).Kind);
        Assert.Equal(ErrorKind.Usage, Assert.Throws<MoeCompressException>(() => ProfileComparison.Compare([("a", Code), ("a", Prose)], 4, "frequency")).Kind);
        Assert.Equal(ErrorKind.Usage, Assert.Throws<MoeCompressException>(() => ProfileComparison.Compare([("a", Code), ("b", Prose)], 9, "frequency")).Kind);
        var naee = Assert.Throws<MoeCompressException>(() => ProfileComparison.Compare([("a", Code), ("b", Prose)], 4, "naee"));
        Assert.Contains("reap", naee.Message);
        var other = Profile("x", [1, 2, 3, 4]);
        Assert.Contains("same model", Assert.Throws<MoeCompressException>(() => ProfileComparison.Compare([("a", Code), ("b", other)], 2, "reap")).Message);
        // STUN reads profiles too.
        Assert.Equal(2, ProfileComparison.Compare([("a", Code), ("b", Prose)], 4, "stun").Layers.Count);
    }
}
