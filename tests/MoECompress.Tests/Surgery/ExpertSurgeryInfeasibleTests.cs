using System.Diagnostics;
using MoECompress.Compression.Surgery;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Families;
using MoECompress.Formats.Synthetic;
using MoECompress.Tests.Families;

namespace MoECompress.Tests.Surgery;

/// <summary>Plans a model cannot load fail fast, with one-line messages, leaving no output and the input untouched.</summary>
public sealed class ExpertSurgeryInfeasibleTests : IDisposable
{
    private readonly TempDirectory _dir = new();
    private readonly string _inDir;

    public ExpertSurgeryInfeasibleTests()
    {
        _inDir = _dir.Sub("in");
        // DeepSeek-V3 layout: 16 experts in n_group = 4 groups, topk_group = 2, top-k = 4, one MTP layer.
        SyntheticCheckpoint.Write("deepseek-v3", _inDir, new SyntheticOptions { Seed = 9 });
    }

    public void Dispose() => _dir.Dispose();

    private static ExpertSurgeryPlan Plan(ModelCheckpoint input, Func<int, IEnumerable<int>> kept) => new()
    {
        Operation = "prune",
        Layers = SurgeryFixtures.RoutedLayers(input).ToDictionary(l => l,
            l => (IReadOnlyList<OutputExpert>)kept(l).Select(OutputExpert.Copy).ToList()),
    };

    public static IEnumerable<object[]> InfeasiblePlans =>
    [
        ["top-k", new[] { 0, 1, 2 }, "fewer experts than top-k"],
        ["not divisible", new[] { 0, 1, 2, 4, 5, 8, 9, 12, 13, 14 }, "not divisible by n_group = 4"],
        ["too few per group", new[] { 0, 4, 8, 12 }, "topk_group = 2"],
        ["unbalanced", new[] { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13 }, "same number of kept experts in every group"],
        ["out of group order", new[] { 4, 5, 0, 1, 8, 9, 12, 13 }, "group by group"],
    ];

    [Theory]
    [MemberData(nameof(InfeasiblePlans))]
    public void Infeasible_plan_fails_fast_without_output(string what, int[] kept, string expected)
    {
        var before = SurgeryFixtures.HashFiles(_inDir);
        string outDir = _dir.Sub("out");
        using (var input = ModelCheckpoint.Open(_inDir))
        {
            var plan = Plan(input, _ => kept);
            // Warm the code path once (JIT), then time the failure itself.
            Assert.Throws<MoeCompressException>(() => ExpertSurgery.Write(input, plan, outDir));
            var clock = Stopwatch.StartNew();
            var error = Assert.Throws<MoeCompressException>(() => ExpertSurgery.Write(input, plan, outDir));
            clock.Stop();
            Assert.Equal(ErrorKind.Infeasible, error.Kind);
            Assert.Contains(expected, error.Message);
            Assert.DoesNotContain('\n', error.Message);
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(1), $"{what}: failing took {clock.Elapsed.TotalMilliseconds:F0} ms");
        }
        SurgeryFixtures.AssertNoOutput(outDir);
        Assert.Equal(before, SurgeryFixtures.HashFiles(_inDir));
    }

    [Fact]
    public void Unbalanced_groups_name_the_layer_and_the_counts()
    {
        using var input = ModelCheckpoint.Open(_inDir);
        int first = SurgeryFixtures.RoutedLayers(input)[0];
        var plan = Plan(input, _ => [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13]);
        var error = Assert.Throws<MoeCompressException>(() => ExpertSurgery.Write(input, plan, _dir.Sub("out")));
        Assert.Contains($"layer {first}:", error.Message);
        Assert.Contains("[4, 4, 2, 2]", error.Message);
    }

    [Fact]
    public void Different_counts_per_layer_are_infeasible()
    {
        using var input = ModelCheckpoint.Open(_inDir);
        var layers = SurgeryFixtures.RoutedLayers(input);
        Assert.True(layers.Count >= 2);
        var plan = Plan(input, l => l == layers[^1] ? Enumerable.Range(0, 16) : [0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14]);
        var error = Assert.Throws<MoeCompressException>(() => ExpertSurgery.Write(input, plan, _dir.Sub("out")));
        Assert.Equal(ErrorKind.Infeasible, error.Kind);
        Assert.Contains("one expert count", error.Message);
        SurgeryFixtures.AssertNoOutput(_dir.Sub("out"));
    }

    public static IEnumerable<object[]> MalformedPlans =>
    [
        ["missing layer", "does not list routed layer"],
        ["extra layer", "has no routed experts"],
        ["copied twice", "copied twice"],
        ["out of range", "does not exist"],
        ["weights count", "member weights for"],
        ["merged without weights", "no merged weights"],
        ["representative not a member", "is not one of its members"],
        ["negative weight", "finite and non-negative"],
    ];

    [Theory]
    [MemberData(nameof(MalformedPlans))]
    public void Malformed_plan_is_a_usage_error(string what, string expected)
    {
        using var input = ModelCheckpoint.Open(_inDir);
        var layers = SurgeryFixtures.RoutedLayers(input);
        int[] ok = [0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14];
        var copies = ok.Select(OutputExpert.Copy).ToList();
        var byLayer = layers.ToDictionary(l => l, _ => (IReadOnlyList<OutputExpert>)copies);
        IMergedExpertWeights? weights = null;
        List<OutputExpert> With(int k, OutputExpert o) => copies.Select((c, i) => i == k ? o : c).ToList();
        switch (what)
        {
            case "missing layer": byLayer.Remove(layers[^1]); break;
            case "extra layer": byLayer[0] = copies; break; // layer 0 is dense (first_k_dense_replace = 1)
            case "copied twice": byLayer[layers[0]] = With(1, OutputExpert.Copy(0)); break;
            case "out of range": byLayer[layers[0]] = With(11, OutputExpert.Copy(16)); break;
            case "weights count": byLayer[layers[0]] = With(11, new OutputExpert(14, [14, 15], [1.0])); break;
            case "merged without weights": byLayer[layers[0]] = With(11, new OutputExpert(14, [14, 15], [1.0, 1.0], Merged: true)); break;
            case "representative not a member": byLayer[layers[0]] = With(11, new OutputExpert(14, [15], [1.0])); break;
            case "negative weight": byLayer[layers[0]] = With(11, new OutputExpert(14, [14, 15], [1.0, -1.0], RouterRowRule.Weighted)); break;
            default: throw new ArgumentException(what);
        }
        var plan = new ExpertSurgeryPlan { Operation = "prune", Layers = byLayer, Weights = weights };
        var error = Assert.Throws<MoeCompressException>(() => ExpertSurgery.Write(input, plan, _dir.Sub("out")));
        Assert.Equal(ErrorKind.Usage, error.Kind);
        Assert.Contains(expected, error.Message);
        SurgeryFixtures.AssertNoOutput(_dir.Sub("out"));
    }

    [Fact]
    public void Output_inside_or_equal_to_the_input_is_refused()
    {
        using var input = ModelCheckpoint.Open(_inDir);
        var plan = SurgeryFixtures.PrunePlan(input, 12);
        var error = Assert.Throws<MoeCompressException>(() => ExpertSurgery.Write(input, plan, _inDir, new ExpertSurgeryOptions { Overwrite = true }));
        Assert.Equal(ErrorKind.Usage, error.Kind);
        var parent = Assert.Throws<MoeCompressException>(() => ExpertSurgery.Write(input, plan, _dir.Root, new ExpertSurgeryOptions { Overwrite = true }));
        Assert.Equal(ErrorKind.Usage, parent.Kind);
        Assert.True(File.Exists(Path.Combine(_inDir, "config.json")));
    }

    [Fact]
    public void Cancelled_write_leaves_nothing()
    {
        var before = SurgeryFixtures.HashFiles(_inDir);
        using (var input = ModelCheckpoint.Open(_inDir))
        {
            var plan = SurgeryFixtures.PrunePlan(input, 12);
            using var cts = new CancellationTokenSource();
            int lines = 0;
            var progress = new CancelAfter(() => { if (++lines == 2) cts.Cancel(); });
            Assert.ThrowsAny<OperationCanceledException>(() =>
                ExpertSurgery.Write(input, plan, _dir.Sub("out"), new ExpertSurgeryOptions { FlushToDisk = false }, progress, cts.Token));
        }
        SurgeryFixtures.AssertNoOutput(_dir.Sub("out"));
        Assert.Equal(before, SurgeryFixtures.HashFiles(_inDir));
    }

    private sealed class CancelAfter(Action onReport) : IProgress<string>
    {
        public void Report(string value) => onReport();
    }
}

/// <summary>The invariant checks on their own: messages, feasible counts, group balance.</summary>
public class MoEInvariantsTests
{
    private static MoEConfig Config(string preset)
    {
        var (p, _, config, _) = SyntheticCheckpoint.Plan(preset);
        return FamilyRegistry.Get(p.Family).ReadConfig(config, "config.json");
    }

    [Fact]
    public void Feasible_counts_follow_top_k_and_groups()
    {
        var mixtral = Config("mixtral");
        Assert.Equal(Enumerable.Range(2, 7), MoEInvariants.FeasibleCounts(mixtral));
        var v3 = Config("deepseek-v3");
        Assert.Equal((16, 4, 2, 4), (v3.NumExperts, v3.NumGroups, v3.TopKGroups, v3.TopK));
        Assert.Equal([8, 12, 16], MoEInvariants.FeasibleCounts(v3));
        foreach (var c in MoEInvariants.FeasibleCounts(v3)) MoEInvariants.CheckOutputCount(v3, c, "--experts");
    }

    [Theory]
    [InlineData(0, "at least one")]
    [InlineData(17, "only 16 routed experts")]
    [InlineData(3, "top-k")]
    [InlineData(6, "not divisible by n_group = 4")]
    [InlineData(4, "topk_group = 2 groups of 1 experts offer only 2 experts")]
    public void Check_output_count_names_the_option(int experts, string expected)
    {
        var v3 = Config("deepseek-v3");
        var error = Assert.Throws<MoeCompressException>(() => MoEInvariants.CheckOutputCount(v3, experts, "--experts"));
        Assert.Equal(ErrorKind.Infeasible, error.Kind);
        Assert.StartsWith($"--experts = {experts}: ", error.Message);
        Assert.Contains(expected, error.Message);
        Assert.Contains("feasible: 8, 12, 16", error.Message);
    }

    [Fact]
    public void Group_balance_counts_per_group()
    {
        var v3 = Config("deepseek-v3");
        MoEInvariants.CheckGroupBalance(v3, 1, [0, 1, 4, 5, 8, 9, 12, 13]);
        var error = Assert.Throws<MoeCompressException>(() => MoEInvariants.CheckGroupBalance(v3, 2, [0, 1, 2, 4, 8, 9, 12, 13]));
        Assert.Equal(ErrorKind.Infeasible, error.Kind);
        Assert.Contains("layer 2", error.Message);
        Assert.Contains("[3, 1, 2, 2]", error.Message);
        var range = Assert.Throws<MoeCompressException>(() => MoEInvariants.CheckGroupBalance(v3, 2, [0, 16]));
        Assert.Equal(ErrorKind.Usage, range.Kind);
        // Without groups any subset is balanced.
        MoEInvariants.CheckGroupBalance(Config("mixtral"), 0, [0, 1, 7]);
    }
}
