using MoECompress.Compression.Training;

namespace MoECompress.Tests.Training;

public class ReferenceModelTrainerDeterminismTests
{
    private static Dictionary<string, float[]> TrainWeights(long seed, int steps = 3)
    {
        var options = TinyTrainingFixture.Options(steps, seed);
        using var trained = ReferenceModelTrainer.TrainModel(options, TinyTrainingFixture.Corpus(options.SequenceLength, seed),
            TinyTrainingFixture.Vocabulary);
        Assert.Equal(steps, trained.Log.Count);
        Assert.All(trained.Log, row => Assert.True(double.IsFinite(row.CrossEntropy)));
        return TinyTrainingFixture.Weights(trained.Model);
    }

    [Fact]
    public void SameSeedGivesBitIdenticalWeights()
    {
        var first = TrainWeights(seed: 11);
        var second = TrainWeights(seed: 11);
        Assert.Equal(first.Keys, second.Keys);
        foreach (var (name, values) in first)
            Assert.True(values.AsSpan().SequenceEqual(second[name]), $"{name} differs between two runs with the same seed");
    }

    [Fact]
    public void DifferentSeedGivesDifferentWeights()
    {
        var first = TrainWeights(seed: 11);
        var other = TrainWeights(seed: 12);
        Assert.False(first["model.layers.0.block_sparse_moe.experts.0.w1.weight"].AsSpan()
            .SequenceEqual(other["model.layers.0.block_sparse_moe.experts.0.w1.weight"]));
    }

    [Fact]
    public void TrainingChangesTheWeightsAndLowersTheLoss()
    {
        var options = TinyTrainingFixture.Options(steps: 40, seed: 3);
        using var initial = new MixtralTrainingModel(options, TinyTrainingFixture.Vocabulary, options.Seed);
        var before = TinyTrainingFixture.Weights(initial);
        using var trained = ReferenceModelTrainer.TrainModel(options, TinyTrainingFixture.Corpus(options.SequenceLength, 3),
            TinyTrainingFixture.Vocabulary);
        var after = TinyTrainingFixture.Weights(trained.Model);
        // Every expert of every layer receives gradient at some point (the balancing loss keeps them alive).
        foreach (var name in before.Keys.Where(n => n.Contains(".experts.")))
            Assert.False(before[name].AsSpan().SequenceEqual(after[name]), $"{name} never changed");
        Assert.True(trained.Log[^1].CrossEntropy < trained.Log[0].CrossEntropy - 1.0,
            $"loss went from {trained.Log[0].CrossEntropy:F3} to {trained.Log[^1].CrossEntropy:F3}");
    }
}
