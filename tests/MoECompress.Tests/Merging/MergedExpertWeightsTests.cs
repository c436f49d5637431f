using MoECompress.Compression.Merging;
using MoECompress.Formats.Families;
using MoECompress.Tests.Calibration;
using MoECompress.Tests.Evaluation;
using static TorchSharp.torch;

namespace MoECompress.Tests.Merging;

public class MergedExpertWeightsTests
{
    private static readonly IReadOnlyList<ExpertCluster> Clusters =
        [new ExpertCluster([0, 3], [0.25, 0.75], 3), ExpertCluster.FromFrequencies([1], [1, 1, 1, 1]), ExpertCluster.FromFrequencies([2], [1, 1, 1, 1])];

    [Fact]
    public void Layers_are_computed_once_held_one_at_a_time_and_read_back_from_the_cache()
    {
        using var scope = NewDisposeScope();
        using var model = TinyEvalModel.Create(experts: 4, seed: 3);
        var dir = TinyCalibrationModel.NewPath("weights-in");
        model.Save(dir);
        using var checkpoint = ModelCheckpoint.Open(dir);
        var layers = Enumerable.Range(0, TinyEvalModel.Layers).ToDictionary(l => l, _ => Clusters);
        var cache = TinyCalibrationModel.NewPath("weights-cache");
        var settings = new ExpertMergeSettings { Method = MergeMethod.Subspace, Rank = 5 };
        using (var weights = new MergedExpertWeights(checkpoint, layers, settings, cacheDirectory: cache))
        {
            var first = weights.Weight(0, 0, ExpertProjection.Down);
            var other = weights.Weight(1, 0, ExpertProjection.Gate);
            var again = weights.Weight(0, 0, ExpertProjection.Down);
            Assert.Equal(2, weights.LayersComputed);
            Assert.True(first.eq(again).all().item<bool>());
            Assert.False(first.eq(other.t()).all().item<bool>());
            Assert.True(Directory.Exists(cache));
            Assert.Equal(5, weights.Statistics[(0, 0)][ExpertProjection.Down].RankKept);

            // Against a fresh computation of the same merge.
            var members = new[] { 0, 3 }.Select(e => checkpoint.LoadExpert(0, e, ExpertProjection.Down)).ToList();
            var (expected, _) = ExpertWeightMerge.Subspace(members, [0.25, 0.75], rank: 5);
            Assert.True(expected.eq(again).all().item<bool>());
            Assert.Throws<ArgumentException>(() => weights.Weight(0, 1, ExpertProjection.Gate)); // a copied expert
            Assert.Throws<ArgumentException>(() => weights.Weight(7, 0, ExpertProjection.Gate)); // not in the plan
        }
        Assert.False(Directory.Exists(cache));
    }

    [Fact]
    public void Average_settings_give_the_weighted_average()
    {
        using var scope = NewDisposeScope();
        using var model = TinyEvalModel.Create(experts: 4, seed: 4);
        var dir = TinyCalibrationModel.NewPath("weights-avg");
        model.Save(dir);
        using var checkpoint = ModelCheckpoint.Open(dir);
        var layers = new Dictionary<int, IReadOnlyList<ExpertCluster>> { [1] = Clusters };
        using var weights = new MergedExpertWeights(checkpoint, layers, new ExpertMergeSettings { Method = MergeMethod.Average });
        var expected = checkpoint.LoadExpert(1, 0, ExpertProjection.Up) * 0.25f + checkpoint.LoadExpert(1, 3, ExpertProjection.Up) * 0.75f;
        Assert.True((weights.Weight(1, 0, ExpertProjection.Up) - expected).abs().max().item<float>() < 1e-6);
    }
}
