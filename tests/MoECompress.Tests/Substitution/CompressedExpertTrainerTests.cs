using MoECompress.Compression.Substitution;
using MoECompress.Tests.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace MoECompress.Tests.Substitution;

public sealed class CompressedExpertTrainerTests
{
    [Fact]
    public void FullBatchTrainingLowersTheBlockErrorAtEveryStep()
    {
        using var model = TinyModel.Create("mixtral", layers: 1, experts: 8, topK: 2);
        using var layer = model.Engine().LoadLayer(0);
        var block = layer.MoE!;
        using var scope = NewDisposeScope();
        var x = TinyModel.Randn(new Random(11), 1.0, 512, TinyModel.Hidden);
        Tensor target;
        using (no_grad()) target = block.Forward(x);
        var settings = new CompressedExpertTraining { Steps = 40, LearningRate = 0.01, BatchTokens = 512, Seed = 1 };
        var (vectors, result) = CompressedExpertTrainer.Train(block, x, target, aux: 1, settings);
        using var _ = vectors;

        Assert.Equal(40, result.Loss.Count);
        // Step 0's loss is measured with vectors of ones on the full batch: the initial error itself.
        Assert.True(Math.Abs(result.Loss[0] - result.InitialError) <= 1e-4 * result.InitialError, $"{result.Loss[0]} vs {result.InitialError}");
        for (var i = 1; i < result.Loss.Count; i++)
            Assert.True(result.Loss[i] < result.Loss[i - 1], $"step {i}: {result.Loss[i]} ≥ {result.Loss[i - 1]}");
        Assert.True(result.FinalError < 0.9 * result.InitialError, $"{result.InitialError} → {result.FinalError}");
        Assert.False(vectors.GateInput.equal(ones_like(vectors.GateInput)).all().item<bool>(), "the vectors were trained");
        Assert.Equal(DeviceType.CPU, vectors.Intermediate.device_type);
    }

    [Fact]
    public void TrainedVectorsRunInTheEngineWithTheTrainedError()
    {
        using var model = TinyModel.Create("olmoe", layers: 1, experts: 8, topK: 2);
        using var layer = model.Engine().LoadLayer(0);
        var block = layer.MoE!;
        using var scope = NewDisposeScope();
        var x = TinyModel.Randn(new Random(12), 1.0, 256, TinyModel.Hidden);
        Tensor target;
        using (no_grad()) target = block.Forward(x);
        var (vectors, result) = CompressedExpertTrainer.Train(block, x, target, aux: 1,
            new CompressedExpertTraining { Steps = 30, LearningRate = 0.02, BatchTokens = 64 });
        var substituted = new Compression.Model.MoEBlock(block.Layer, block.Router, block.Experts) { CompressedExperts = vectors };
        Tensor y;
        using (no_grad()) y = substituted.Forward(x);
        var error = (y - target).square().sum().item<float>() / target.square().sum().item<float>();
        Assert.True(Math.Abs(error - result.FinalError) <= 1e-4 * result.FinalError, $"{error} vs {result.FinalError}");
        vectors.Dispose();
    }

    [Fact]
    public void AuxiliaryCountMustLeaveAComputedExpert()
    {
        using var model = TinyModel.Create("mixtral", layers: 1, experts: 4, topK: 2);
        using var layer = model.Engine().LoadLayer(0);
        using var scope = NewDisposeScope();
        var x = TinyModel.Randn(new Random(1), 1.0, 8, TinyModel.Hidden);
        Assert.Throws<ArgumentOutOfRangeException>(() => CompressedExpertTrainer.Train(layer.MoE!, x, x, aux: 2, new CompressedExpertTraining()));
    }
}
