using MoECompress.Compression.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace MoECompress.Tests.Model;

/// <summary>
/// The observer hooks carry what the calibration collector needs (DESIGN §4): per-expert input Hessians XᵀX for
/// gate/up and HᵀH for down_proj, selection counts, REAP scores — accumulated over micro-batches without re-running.
/// </summary>
public class CalibrationHookTests
{
    private sealed class HessianCollector : ILayerObserver, IDisposable
    {
        public readonly Dictionary<(int Layer, int Expert), Tensor> InputHessian = new();
        public readonly Dictionary<(int Layer, int Expert), Tensor> DownHessian = new();
        public readonly Dictionary<(int Layer, int Expert), long> Counts = new();
        public readonly Dictionary<(int Layer, int Expert), double> ReapSum = new();

        public void OnExpert(ExpertActivation a)
        {
            var key = (a.Layer, a.Expert);
            using var scope = NewDisposeScope();
            Accumulate(InputHessian, key, a.Input.t().matmul(a.Input));
            Accumulate(DownHessian, key, a.Intermediate.t().matmul(a.Intermediate));
            Counts[key] = Counts.GetValueOrDefault(key) + a.TokenCount;
            ReapSum[key] = ReapSum.GetValueOrDefault(key) + (a.Gates * a.Output.norm(1)).sum().item<float>();
        }

        private static void Accumulate(Dictionary<(int, int), Tensor> target, (int, int) key, Tensor value)
        {
            if (target.TryGetValue(key, out var sum)) sum.add_(value);
            else target[key] = value.clone().DetachFromDisposeScope();
        }

        public void Dispose()
        {
            foreach (var t in InputHessian.Values.Concat(DownHessian.Values)) t.Dispose();
        }
    }

    [Fact]
    public void ExpertHessiansFromMicroBatchesEqualADirectComputation()
    {
        using var model = TinyModel.Create("qwen2_moe", layers: 2);
        var sequences = new[] { TinyModel.Tokens(71, 6), TinyModel.Tokens(72, 6), TinyModel.Tokens(73, 4) };
        using var collector = new HessianCollector();
        model.Engine().CreateRunner(new StreamingOptions { MicroBatchTokens = 6 }).Run(sequences, null, collector);

        // Direct: every MoE block input of the whole-model pass, and which experts each token chose.
        var inputs = new Dictionary<int, List<Tensor>>();
        var chosen = new Dictionary<int, List<long[]>>();
        var observer = new DelegateObserver(onMoEBlock: a =>
        {
            inputs.TryAdd(a.Layer, new());
            chosen.TryAdd(a.Layer, new());
            inputs[a.Layer].Add(a.Input.clone().DetachFromDisposeScope());
            var k = (int)a.Routing.TopK;
            var idx = a.Routing.TopKIndices.data<long>().ToArray();
            for (var t = 0; t < a.Routing.TokenCount; t++) chosen[a.Layer].Add(idx.Skip(t * k).Take(k).ToArray());
        });
        using (var resident = model.Engine().LoadResident())
            foreach (var s in sequences) resident.Forward(s, observer).Dispose();

        try
        {
            foreach (var (layer, parts) in inputs)
            {
                using var scope = NewDisposeScope();
                var x = cat(parts, 0);
                for (var e = 0; e < model.MoE.NumExperts; e++)
                {
                    var rows = chosen[layer].Select((c, t) => (c, t)).Where(p => p.c.Contains(e)).Select(p => (long)p.t).ToArray();
                    Assert.Equal(rows.Length, collector.Counts.GetValueOrDefault((layer, e)));
                    if (rows.Length == 0) continue;
                    var xe = x.index_select(0, tensor(rows));
                    Assert.True(collector.InputHessian[(layer, e)].allclose(xe.t().matmul(xe), 1e-4, 1e-4), $"layer {layer} expert {e}");
                    Assert.Equal(new long[] { model.MoE.ExpertIntermediateSize, model.MoE.ExpertIntermediateSize }, collector.DownHessian[(layer, e)].shape);
                }
            }
            Assert.Equal(2 * sequences.Sum(s => s.Length) * model.MoE.NumMoELayers, collector.Counts.Values.Sum());
            Assert.All(collector.ReapSum.Values, v => Assert.True(v > 0));
        }
        finally
        {
            foreach (var t in inputs.Values.SelectMany(v => v)) t.Dispose();
        }
    }
}
