using MoECompress.Tests.Infrastructure;
using MoECompress.Compression.Model;
using MoECompress.Formats.Families;
using TorchSharp;
using static TorchSharp.torch;

namespace MoECompress.Tests.Model;

public class MoEBlockTests
{
    private const int H = 3, I = 2, E = 3, T = 5;

    private sealed class Fixture : IDisposable
    {
        public readonly MoEBlock Block;
        public readonly double[,] Router;
        public readonly double[][,] Gate = new double[E][,], Up = new double[E][,], Down = new double[E][,];
        public readonly double[,]? SharedGate, SharedUp, SharedDown;
        public readonly double[]? SharedGateVector;

        public Fixture(RouterSpec spec, bool shared, bool sharedGate, int seed = 3)
        {
            var rng = new Random(seed);
            var router = TinyModel.Randn(rng, 1.0, E, H);
            Router = Reference.Matrix(router);
            var experts = new List<GatedMlp>();
            for (var e = 0; e < E; e++)
            {
                var g = TinyModel.Randn(rng, 0.8, I, H);
                var u = TinyModel.Randn(rng, 0.8, I, H);
                var d = TinyModel.Randn(rng, 0.8, H, I);
                (Gate[e], Up[e], Down[e]) = (Reference.Matrix(g), Reference.Matrix(u), Reference.Matrix(d));
                experts.Add(new GatedMlp(g, u, d));
            }
            GatedMlp? sharedMlp = null;
            Tensor? gateVector = null;
            if (shared)
            {
                var g = TinyModel.Randn(rng, 0.8, 4, H);
                var u = TinyModel.Randn(rng, 0.8, 4, H);
                var d = TinyModel.Randn(rng, 0.8, H, 4);
                (SharedGate, SharedUp, SharedDown) = (Reference.Matrix(g), Reference.Matrix(u), Reference.Matrix(d));
                sharedMlp = new GatedMlp(g, u, d);
                if (sharedGate)
                {
                    gateVector = TinyModel.Randn(rng, 1.0, 1, H);
                    SharedGateVector = Reference.Vector(gateVector);
                }
            }
            Block = new MoEBlock(0, new MoERouter(spec, router), experts, sharedMlp, gateVector);
        }

        public double[] Expected(double[] x, RouterSpec spec)
        {
            var p = Reference.Softmax(Reference.MatVec(Router, x));
            var top = Enumerable.Range(0, E).OrderByDescending(e => p[e]).Take(spec.TopK).ToArray();
            var sum = top.Sum(e => p[e]);
            var y = new double[H];
            foreach (var e in top)
            {
                var w = (spec.Normalize ? p[e] / sum : p[e]) * spec.ScalingFactor;
                y = Reference.Add(y, Reference.Scale(Reference.GatedMlp(Gate[e], Up[e], Down[e], x), w));
            }
            if (SharedGate is not null)
            {
                var s = Reference.GatedMlp(SharedGate, SharedUp!, SharedDown!, x);
                var g = SharedGateVector is null ? 1.0 : Reference.Sigmoid(Reference.Dot(SharedGateVector, x));
                y = Reference.Add(y, Reference.Scale(s, g));
            }
            return y;
        }

        public void Dispose() => Block.Dispose();
    }

    private static Tensor Input(out double[][] rows)
    {
        var x = TinyModel.Randn(new Random(99), 1.0, T, H);
        var m = Reference.Matrix(x);
        rows = Enumerable.Range(0, T).Select(t => Reference.Row(m, t)).ToArray();
        return x;
    }

    [Theory]
    [InlineData(true, false, false)]   // Mixtral: renormalised top-2
    [InlineData(false, false, false)]  // OLMoE / Qwen without norm_topk_prob
    [InlineData(false, true, true)]    // Qwen2-MoE: shared expert × sigmoid(shared_expert_gate·x)
    [InlineData(false, true, false)]   // DeepSeek: shared experts added without gate
    public void BlockOutputMatchesDirectFormula(bool normalize, bool shared, bool sharedGate)
    {
        using var scope = NewDisposeScope();
        var spec = new RouterSpec { NumExperts = E, TopK = 2, Scoring = RouterScoring.Softmax, Normalize = normalize };
        using var f = new Fixture(spec, shared, sharedGate);
        var x = Input(out var rows);
        using var noGrad = no_grad();
        var y = Reference.Matrix(f.Block.Forward(x));
        for (var t = 0; t < T; t++)
            Reference.AssertClose(f.Expected(rows[t], spec), Reference.Row(y, t), 1e-5, $"token {t}");
    }

    [Fact]
    public void ScalingFactorScalesRoutedOutputOnly()
    {
        using var scope = NewDisposeScope();
        var spec = new RouterSpec { NumExperts = E, TopK = 2, Scoring = RouterScoring.Softmax, Normalize = false, ScalingFactor = 3 };
        using var f = new Fixture(spec, shared: true, sharedGate: false);
        var x = Input(out var rows);
        using var noGrad = no_grad();
        var y = Reference.Matrix(f.Block.Forward(x));
        for (var t = 0; t < T; t++)
            Reference.AssertClose(f.Expected(rows[t], spec), Reference.Row(y, t), 1e-5, $"token {t}");
    }

    private sealed class Recorder : ILayerObserver
    {
        public readonly List<(int Expert, long[] Rows, long[] Slots, double[] Gates)> Experts = new();
        public int Blocks;
        public double BlockSumError;

        public void OnExpert(ExpertActivation a)
        {
            Experts.Add((a.Expert, a.TokenRows.data<long>().ToArray(), a.TopKSlots.data<long>().ToArray(), Reference.Vector(a.Gates)));
        }

        public void OnMoEBlock(MoEBlockActivation a)
        {
            Blocks++;
            using var scope = NewDisposeScope();
            var routedPlusShared = a.SharedOutput is null ? a.RoutedOutput : a.RoutedOutput + a.SharedOutput;
            BlockSumError = (routedPlusShared - a.Output).abs().max().item<float>();
        }
    }

    [Fact]
    public void ObserverSeesEveryRoutedTokenOnceWithItsGate()
    {
        using var scope = NewDisposeScope();
        var spec = new RouterSpec { NumExperts = E, TopK = 2, Scoring = RouterScoring.Softmax, Normalize = true };
        using var f = new Fixture(spec, shared: true, sharedGate: true);
        var x = Input(out _);
        var recorder = new Recorder();
        using var noGrad = no_grad();
        using var routing = f.Block.Router.Route(x);
        var top = routing.TopKIndices.data<long>().ToArray();
        var weights = routing.TopKWeights.data<float>().ToArray();
        f.Block.Forward(x, null, recorder, new MicroBatch(new[] { 0 }, T));

        Assert.Equal(1, recorder.Blocks);
        Assert.True(recorder.BlockSumError < 1e-6);
        Assert.Equal(T * 2, recorder.Experts.Sum(e => e.Rows.Length));
        foreach (var (expert, rows, slots, gates) in recorder.Experts)
        {
            Assert.True(rows.SequenceEqual(rows.Order()), "token rows ascend");
            for (var i = 0; i < rows.Length; i++)
            {
                Assert.Equal(expert, top[rows[i] * 2 + slots[i]]);
                Tolerance.Close(weights[rows[i] * 2 + slots[i]], gates[i], Tolerance.Float32, 1e-7);
            }
        }
    }

    [Fact]
    public void ExpertActivationOutputIsTheExpertAppliedToItsInput()
    {
        using var scope = NewDisposeScope();
        var spec = new RouterSpec { NumExperts = E, TopK = 2, Scoring = RouterScoring.Softmax, Normalize = true };
        using var f = new Fixture(spec, shared: false, sharedGate: false);
        var x = Input(out var rows);
        var checkedExperts = 0;
        var observer = new DelegateObserver(onExpert: a =>
        {
            var xs = Reference.Matrix(a.Input);
            var ys = Reference.Matrix(a.Output);
            var tokenRows = a.TokenRows.data<long>().ToArray();
            for (var i = 0; i < tokenRows.Length; i++)
            {
                Reference.AssertClose(rows[tokenRows[i]], Reference.Row(xs, i), 0, "input row");
                var expected = Reference.GatedMlp(f.Gate[a.Expert], f.Up[a.Expert], f.Down[a.Expert], rows[tokenRows[i]]);
                Reference.AssertClose(expected, Reference.Row(ys, i), 1e-5, "expert output");
            }
            Assert.Equal(new long[] { tokenRows.Length, I }, a.Intermediate.shape);
            checkedExperts++;
        });
        using var noGrad = no_grad();
        f.Block.Forward(x, null, observer, null);
        Assert.True(checkedExperts > 0);
    }

    [Fact]
    public void ReplacingAnExpertAndPruningUseTheWhatIfOptions()
    {
        using var scope = NewDisposeScope();
        var spec = new RouterSpec { NumExperts = E, TopK = 2, Scoring = RouterScoring.Softmax, Normalize = true };
        using var f = new Fixture(spec, shared: false, sharedGate: false);
        var x = Input(out var rows);
        using var noGrad = no_grad();
        var baseline = f.Block.Forward(x);
        // Replacing every expert by itself changes nothing.
        var same = f.Block.Forward(x, new MoEForwardOptions { ExpertReplacements = Enumerable.Range(0, E).ToDictionary(e => e, e => f.Block.Experts[e]) });
        Assert.True(baseline.allclose(same, 0, 0));
        // With expert 0 pruned and top-2 of 3, every token uses experts 1 and 2 with renormalised weights.
        var pruned = Reference.Matrix(f.Block.Forward(x, new MoEForwardOptions { KeptExperts = new[] { false, true, true } }));
        for (var t = 0; t < T; t++)
        {
            var p = Reference.Softmax(Reference.MatVec(f.Router, rows[t]));
            var y1 = Reference.GatedMlp(f.Gate[1], f.Up[1], f.Down[1], rows[t]);
            var y2 = Reference.GatedMlp(f.Gate[2], f.Up[2], f.Down[2], rows[t]);
            var expected = Reference.Add(Reference.Scale(y1, p[1] / (p[1] + p[2])), Reference.Scale(y2, p[2] / (p[1] + p[2])));
            Reference.AssertClose(expected, Reference.Row(pruned, t), 1e-5, $"pruned token {t}");
        }
    }
}
