using MoECompress.Tests.Infrastructure;
using MoECompress.Compression.Evaluation;
using MoECompress.Compression.Model;
using MoECompress.Formats.Errors;
using TorchSharp;
using static TorchSharp.torch;

namespace MoECompress.Tests.Evaluation;

public class EvaluatorTests
{
    private const int Vocab = 40;

    private static int[] RandomTokens(int count, int seed = 7)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, count).Select(_ => rng.Next(Vocab)).ToArray();
    }

    /// <summary>Small micro-batches and two logits rows per chunk, so batching and chunking are exercised.</summary>
    private static EvaluationSettings Settings(int context, int stride) => new(context, stride)
    {
        Streaming = new StreamingOptions { MicroBatchTokens = 2 * context },
        MaxLogitsElementsPerChunk = 2 * Vocab,
    };

    /// <summary>Full logits of one window, and each decoder layer's output [L, H], from the resident (whole-model) path.</summary>
    private sealed class LayerOutputs : ILayerObserver
    {
        public readonly List<float[,]> Outputs = new();

        public void OnLayerOutput(LayerActivation activation)
        {
            var o = activation.Output[0];
            var rows = (int)o.shape[0];
            var cols = (int)o.shape[1];
            var data = o.contiguous().data<float>().ToArray();
            var m = new float[rows, cols];
            for (var r = 0; r < rows; r++)
                for (var c = 0; c < cols; c++) m[r, c] = data[r * cols + c];
            Outputs.Add(m);
        }
    }

    private sealed record WindowRun(int Begin, List<int> Scored, double[][] LogProbs, List<float[,]> LayerOutputs);

    /// <summary>Runs every window of the Hugging Face loop through the resident model: log-probs of every row, layer outputs.</summary>
    private static List<WindowRun> BruteForce(ModelEngine engine, int[] tokens, int context, int stride)
    {
        using var model = engine.LoadResident();
        var runs = new List<WindowRun>();
        foreach (var (begin, end, scored) in SlidingWindowPlanTests.HuggingFaceWindows(tokens.Length, context, stride))
        {
            if (scored.Count == 0) continue;
            using var scope = NewDisposeScope();
            var observer = new LayerOutputs();
            var logits = model.Forward(tokens[begin..end], observer);
            var lp = logits.to(ScalarType.Float64).log_softmax(-1);
            var rows = (int)lp.shape[0];
            var v = (int)lp.shape[1];
            var flat = lp.data<double>().ToArray();
            var perRow = Enumerable.Range(0, rows).Select(r => flat[(r * v)..((r + 1) * v)]).ToArray();
            runs.Add(new WindowRun(begin, scored, perRow, observer.Outputs));
        }
        return runs;
    }

    private static double BruteForceMeanNll(List<WindowRun> runs, int[] tokens)
    {
        double sum = 0;
        long n = 0;
        foreach (var run in runs)
            foreach (var p in run.Scored)
            {
                sum -= run.LogProbs[p - run.Begin - 1][tokens[p]];
                n++;
            }
        return sum / n;
    }

    [Fact]
    public void PerplexityIsExpOfTheBruteForceMeanNll()
    {
        using var tiny = TinyEvalModel.Create(Vocab);
        var engine = tiny.Engine();
        var tokens = RandomTokens(23);

        var metrics = Evaluator.Measure(engine, null, tokens, Settings(8, 3));

        var reference = BruteForceMeanNll(BruteForce(engine, tokens, 8, 3), tokens);
        Assert.Equal(22, metrics.TokensScored);
        Assert.Equal(SlidingWindowPlan.Create(23, 8, 3).Windows.Count, metrics.Windows);
        Tolerance.Close(reference, metrics.MeanNll, Tolerance.Float32Sum);
        Tolerance.Close(Math.Exp(reference), metrics.Perplexity, Tolerance.Float32Sum);
        Assert.True(metrics.Perplexity > 1);
        Assert.Null(metrics.MeanKl);
        Assert.Null(metrics.Top1Agreement);
        Assert.Empty(metrics.LayerErrors);
    }

    [Fact]
    public void ModelAgainstItselfHasZeroKlFullAgreementAndZeroLayerErrors()
    {
        using var tiny = TinyEvalModel.Create(Vocab);
        using var copy = tiny.Clone();
        var tokens = RandomTokens(30, seed: 3);

        var metrics = Evaluator.Measure(tiny.Engine(), copy.Engine(), tokens, Settings(10, 4));

        Assert.Equal(29, metrics.TokensScored);
        Assert.NotNull(metrics.MeanKl);
        Assert.True(Math.Abs(metrics.MeanKl!.Value) < 1e-6, $"KL {metrics.MeanKl}");
        Assert.True(metrics.MaxKl < 1e-6);
        Assert.Equal(1.0, metrics.Top1Agreement);
        Tolerance.Close(metrics.MeanNll, metrics.BaseMeanNll!.Value, Tolerance.Float32);
        Assert.Equal(TinyEvalModel.Layers, metrics.LayerErrors.Count);
        Assert.All(metrics.LayerErrors, e =>
        {
            Tolerance.Close(0.0, e.RelativeError, 0, Tolerance.Float32);
            Tolerance.Close(0.0, e.MeanTokenRelativeError, 0, Tolerance.Float32);
        });
    }

    [Fact]
    public void KlAgainstAPerturbedCopyMatchesTheBruteForceKl()
    {
        using var baseModel = TinyEvalModel.Create(Vocab);
        using var model = baseModel.Clone();
        model.Perturb("model.layers.1.block_sparse_moe.experts.0.w2.weight", 0.5f);
        model.Perturb("model.layers.1.self_attn.o_proj.weight", 0.2f, seed: 5);
        var tokens = RandomTokens(27, seed: 11);
        const int context = 9, stride = 4;

        var metrics = Evaluator.Measure(model.Engine(), baseModel.Engine(), tokens, Settings(context, stride));

        var m = BruteForce(model.Engine(), tokens, context, stride);
        var b = BruteForce(baseModel.Engine(), tokens, context, stride);
        double kl = 0, maxKl = 0;
        long agree = 0, n = 0;
        var diffSq = new double[TinyEvalModel.Layers];
        var baseSq = new double[TinyEvalModel.Layers];
        var tokenRatio = new double[TinyEvalModel.Layers];
        for (var w = 0; w < m.Count; w++)
            foreach (var p in m[w].Scored)
            {
                var row = p - m[w].Begin - 1;
                var lm = m[w].LogProbs[row];
                var lb = b[w].LogProbs[row];
                double rowKl = 0;
                for (var v = 0; v < Vocab; v++) rowKl += Math.Exp(lb[v]) * (lb[v] - lm[v]);
                kl += rowKl;
                maxKl = Math.Max(maxKl, rowKl);
                if (ArgMax(lm) == ArgMax(lb)) agree++;
                n++;
                for (var l = 0; l < TinyEvalModel.Layers; l++)
                {
                    double d = 0, s = 0;
                    for (var h = 0; h < TinyEvalModel.Hidden; h++)
                    {
                        double hm = m[w].LayerOutputs[l][row, h], hb = b[w].LayerOutputs[l][row, h];
                        d += (hm - hb) * (hm - hb);
                        s += hb * hb;
                    }
                    diffSq[l] += d;
                    baseSq[l] += s;
                    tokenRatio[l] += Math.Sqrt(d) / Math.Sqrt(s);
                }
            }

        Assert.Equal(n, metrics.TokensScored);
        Assert.True(metrics.MeanKl > 1e-4, $"KL {metrics.MeanKl}");
        Tolerance.Close(kl / n, metrics.MeanKl!.Value, Tolerance.Float32Sum, 1e-7);
        Tolerance.Close(maxKl, metrics.MaxKl!.Value, Tolerance.Float32Sum, 1e-7);
        Tolerance.Close((double)agree / n, metrics.Top1Agreement!.Value, Tolerance.Double);
        Tolerance.Close(BruteForceMeanNll(m, tokens), metrics.MeanNll, Tolerance.Float32Sum);
        Tolerance.Close(BruteForceMeanNll(b, tokens), metrics.BaseMeanNll!.Value, Tolerance.Float32Sum);
        // Layer 0 is untouched: no error; layer 1 is perturbed.
        Tolerance.Close(0.0, metrics.LayerErrors[0].RelativeError, 0, Tolerance.Float32);
        Assert.True(metrics.LayerErrors[1].RelativeError > 1e-3);
        for (var l = 0; l < TinyEvalModel.Layers; l++)
        {
            Tolerance.Close(Math.Sqrt(diffSq[l] / baseSq[l]), metrics.LayerErrors[l].RelativeError, Tolerance.Float32Sum, 1e-7);
            Tolerance.Close(tokenRatio[l] / n, metrics.LayerErrors[l].MeanTokenRelativeError, Tolerance.Float32Sum, 1e-7);
        }
    }

    [Fact]
    public void PrunedModelWithFewerExpertsCanBeComparedWithItsBase()
    {
        using var baseModel = TinyEvalModel.Create(Vocab);
        using var pruned = baseModel.Clone();
        pruned.DropLastExpert();
        var tokens = RandomTokens(20, seed: 5);

        var metrics = Evaluator.Measure(pruned.Engine(), baseModel.Engine(), tokens, Settings(8, 4));

        Assert.Equal(3, pruned.Engine().MoE.NumExperts);
        Assert.True(metrics.MeanKl > 0);
        Assert.Equal(TinyEvalModel.Layers, metrics.LayerErrors.Count);
        Assert.True(metrics.LayerErrors[^1].RelativeError > 0);
    }

    [Fact]
    public void DifferentVocabularySizesAreRejected()
    {
        using var model = TinyEvalModel.Create(Vocab);
        using var other = TinyEvalModel.Create(Vocab + 8, seed: 5);

        var ex = Assert.Throws<MoeCompressException>(() =>
            Evaluator.Measure(model.Engine(), other.Engine(), RandomTokens(12), Settings(6, 3)));

        Assert.Equal(ErrorKind.Usage, ex.Kind);
        Assert.Contains("vocab_size 48", ex.Message);
        Assert.Contains("40", ex.Message);
    }

    [Fact]
    public void CancellationStopsTheRun()
    {
        using var tiny = TinyEvalModel.Create(Vocab);
        using var cts = new CancellationTokenSource();
        cts.Cancel();

        Assert.ThrowsAny<OperationCanceledException>(() =>
            Evaluator.Measure(tiny.Engine(), null, RandomTokens(20), Settings(8, 4), cancellationToken: cts.Token));
    }

    private static int ArgMax(double[] values)
    {
        var best = 0;
        for (var i = 1; i < values.Length; i++)
            if (values[i] > values[best]) best = i;
        return best;
    }
}
