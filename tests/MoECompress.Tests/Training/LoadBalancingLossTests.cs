using MoECompress.Tests.Infrastructure;
using MoECompress.Compression.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace MoECompress.Tests.Training;

public class LoadBalancingLossTests
{
    [Fact]
    public void PerfectlyBalancedRoutingGivesOne()
    {
        using var scope = NewDisposeScope();
        // 4 tokens, 4 experts, top-2: uniform probabilities and every expert chosen exactly twice.
        var probabilities = torch.full(4, 4, 0.25f);
        var selected = torch.tensor(new long[] { 0, 1, 2, 3, 1, 0, 3, 2 }, [4, 2]);
        Tolerance.Close(1.0, LoadBalancingLoss.Compute(probabilities, selected).item<float>(), Tolerance.Float32);
    }

    [Fact]
    public void BalancedCountsWithSkewedProbabilitiesStillGiveOne()
    {
        using var scope = NewDisposeScope();
        // f is uniform, so E·Σ f·P = Σ P = 1 whatever the probabilities are.
        var probabilities = torch.tensor(new float[] { 0.7f, 0.1f, 0.1f, 0.1f, 0.4f, 0.3f, 0.2f, 0.1f }, [2, 4]);
        var selected = torch.tensor(new long[] { 0, 1, 2, 3 }, [2, 2]);
        Tolerance.Close(1.0, LoadBalancingLoss.Compute(probabilities, selected).item<float>(), Tolerance.Float32);
    }

    [Fact]
    public void CollapsedRoutingIsPenalised()
    {
        using var scope = NewDisposeScope();
        // Every token picks experts 0 and 1 with probability 1/2 each: f = P = [½, ½, 0, 0] → 4 · (¼ + ¼) = 2.
        var probabilities = torch.tensor(new float[] { 0.5f, 0.5f, 0, 0, 0.5f, 0.5f, 0, 0 }, [2, 4]);
        var selected = torch.tensor(new long[] { 0, 1, 1, 0 }, [2, 2]);
        Tolerance.Close(2.0, LoadBalancingLoss.Compute(probabilities, selected).item<float>(), Tolerance.Float32);
        // Hand case with unequal parts: f = [¾, ¼, 0, 0], P = [0.6, 0.2, 0.1, 0.1] → 4 · (0.45 + 0.05) = 2.0.
        var p2 = torch.tensor(new float[] { 0.6f, 0.2f, 0.1f, 0.1f, 0.6f, 0.2f, 0.1f, 0.1f }, [2, 4]);
        var s2 = torch.tensor(new long[] { 0, 1, 0, 0 }, [2, 2]);
        Tolerance.Close(2.0, LoadBalancingLoss.Compute(p2, s2).item<float>(), Tolerance.Float32);
    }

    [Fact]
    public void GradientFlowsOnlyThroughTheProbabilities()
    {
        using var scope = NewDisposeScope();
        var logits = torch.zeros(3, 4, requires_grad: true);
        var probabilities = nn.functional.softmax(logits, -1);
        var selected = torch.tensor(new long[] { 0, 1, 0, 2, 0, 3 }, [3, 2]);
        LoadBalancingLoss.Compute(probabilities, selected).backward();
        var grad = logits.grad!.sum(0L).data<float>().ToArray();
        // Expert 0 is over-selected, so its logit gradient is positive (pushing its probability down).
        Assert.True(grad[0] > 0 && grad[1] < 0 && grad[2] < 0 && grad[3] < 0);
    }

    [Fact]
    public void RouterZLossIsTheMeanSquaredLogSumExp()
    {
        using var scope = NewDisposeScope();
        var logits = torch.tensor(new float[] { 0, 0, 0, 0, 1, 1, 1, 1 }, [2, 4]);
        double a = Math.Log(4), b = 1 + Math.Log(4);
        Tolerance.Close((a * a + b * b) / 2, LoadBalancingLoss.RouterZLoss(logits).item<float>(), Tolerance.Float32);
    }
}
