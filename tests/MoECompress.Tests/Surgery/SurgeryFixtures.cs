using System.Security.Cryptography;
using MoECompress.Compression.Surgery;
using MoECompress.Formats.Families;
using TorchSharp;

namespace MoECompress.Tests.Surgery;

/// <summary>Plans, file hashes and comparisons shared by the expert-surgery tests.</summary>
internal static class SurgeryFixtures
{
    /// <summary>The routed layers present in a checkpoint (decoder MoE layers, then stored MTP MoE layers).</summary>
    public static List<int> RoutedLayers(ModelCheckpoint input) =>
        input.MoE.MoELayerIndices(includeMtp: true)
            .Where(l => !input.MoE.IsMtpLayer(l) || input.MtpLayersPresent.Contains(l)).ToList();

    /// <summary>A feasible count below E, as close to 3E/4 as the invariants allow.</summary>
    public static int PruneTarget(MoEConfig cfg)
    {
        var feasible = MoEInvariants.FeasibleCounts(cfg).Where(c => c < cfg.NumExperts).ToList();
        Assert.NotEmpty(feasible);
        return feasible.OrderBy(c => Math.Abs(c - 3 * cfg.NumExperts / 4.0)).First();
    }

    /// <summary>
    /// Kept experts of one layer: the same count dropped from every routing group, picked pseudo-randomly per layer, and
    /// listed group by group in descending order inside each group (so renumbering is really exercised).
    /// </summary>
    public static List<int> KeptExperts(MoEConfig cfg, int layer, int outputExperts)
    {
        int groups = Math.Max(1, cfg.NumGroups);
        int size = cfg.NumExperts / groups, keep = outputExperts / groups;
        var rng = new Random(1000 + layer);
        var kept = new List<int>();
        for (int g = 0; g < groups; g++)
        {
            var members = Enumerable.Range(g * size, size).OrderBy(_ => rng.Next()).Take(keep).OrderByDescending(e => e);
            kept.AddRange(members);
        }
        return kept;
    }

    /// <summary>A pure prune of every routed layer to <paramref name="outputExperts"/> experts.</summary>
    public static ExpertSurgeryPlan PrunePlan(ModelCheckpoint input, int outputExperts) => new()
    {
        Operation = "prune",
        Layers = RoutedLayers(input).ToDictionary(l => l,
            l => (IReadOnlyList<OutputExpert>)KeptExperts(input.MoE, l, outputExperts).Select(OutputExpert.Copy).ToList()),
    };

    /// <summary>The same output experts for every routed layer.</summary>
    public static ExpertSurgeryPlan SamePlanEveryLayer(ModelCheckpoint input, IReadOnlyList<OutputExpert> experts, string operation,
        IMergedExpertWeights? weights = null) => new()
    {
        Operation = operation,
        Layers = RoutedLayers(input).ToDictionary(l => l, _ => experts),
        Weights = weights,
    };

    /// <summary>SHA-256 of every file under a directory, by relative path.</summary>
    public static Dictionary<string, string> HashFiles(string dir) =>
        Directory.GetFiles(dir, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal).ToDictionary(
            f => Path.GetRelativePath(dir, f),
            f => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(f))));

    /// <summary>Asserts nothing named after <paramref name="output"/> (final or temporary) exists beside it.</summary>
    public static void AssertNoOutput(string output)
    {
        Assert.False(Directory.Exists(output), $"{output} should not exist");
        var parent = Path.GetDirectoryName(output)!;
        if (!Directory.Exists(parent)) return;
        var leftovers = Directory.GetFileSystemEntries(parent, "." + Path.GetFileName(output) + ".*");
        Assert.Empty(leftovers);
    }

    public static void AssertEqual(torch.Tensor expected, torch.Tensor actual, string what)
    {
        Assert.True(expected.shape.SequenceEqual(actual.shape),
            $"{what}: shape [{string.Join(", ", actual.shape)}], expected [{string.Join(", ", expected.shape)}]");
        Assert.True(expected.allclose(actual, 0, 0), $"{what}: values differ (max |Δ| = {(expected - actual).abs().max().item<float>()})");
    }
}
