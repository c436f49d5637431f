using System.Diagnostics;
using MoECompress.Compression.Model;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MoECompress.Compression.Substitution;

/// <summary>
/// Trains one MoE layer's compressed-expert vectors by distillation: minimise the squared error of the routed output
/// against the original block's (all top-k experts computed) on that layer's calibration inputs, with Adam, TorchSharp
/// autograd and only the vectors trainable (routing and expert weights frozen). The forward is
/// <see cref="CompressedMoEForward"/>, the same code the engine runs.
/// </summary>
public static class CompressedExpertTrainer
{
    private const int MeasureChunk = 4096;

    /// <summary>Trains the vectors of <paramref name="block"/>.</summary>
    /// <param name="block">The original MoE block (its router and experts are only read).</param>
    /// <param name="inputs">Block inputs [N, H] (float32, CPU).</param>
    /// <param name="targets">The original block's routed output for those inputs [N, H].</param>
    /// <param name="aux">Auxiliary experts per token, 1 ≤ aux &lt; top-k.</param>
    /// <param name="settings">Steps, learning rate, batch, device.</param>
    /// <param name="cancellationToken">Checked every step.</param>
    /// <returns>The trained vectors (float32, CPU; the caller owns them) and the loss curve.</returns>
    public static (CompressedExpertVectors Vectors, LayerTrainingResult Result) Train(MoEBlock block, Tensor inputs, Tensor targets, int aux,
        CompressedExpertTraining settings, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(block);
        ArgumentNullException.ThrowIfNull(settings);
        settings.Validate();
        var k = block.Router.Spec.TopK;
        if (aux < 1 || aux >= k) throw new ArgumentOutOfRangeException(nameof(aux), aux, $"must be between 1 and top-k − 1 = {k - 1}");
        if (inputs.shape[0] != targets.shape[0] || inputs.shape[0] == 0)
            throw new ArgumentException($"{inputs.shape[0]} inputs for {targets.shape[0]} targets; need the same positive count");

        var device = settings.Device;
        var onCpu = device.type == DeviceType.CPU;
        var experts = onCpu ? block.Experts : block.Experts.Select(e => CopyTo(e, device)).ToList();
        var n = inputs.shape[0];
        var e = block.Experts.Count;
        long h = inputs.shape[1], inter = block.Experts[0].IntermediateSize;
        try
        {
            using var scope = NewDisposeScope();
            ReducedRouting routing;
            using (no_grad())
            {
                using var route = block.Router.Route(inputs);
                using var cpuRouting = ReducedRouting.Create(route, block.Router.Spec, aux, inputs, null);
                routing = cpuRouting.To(device);
            }
            using var _ = routing;
            var x = inputs.to(ScalarType.Float32).to(device);
            var y = targets.to(ScalarType.Float32).to(device);
            var c1 = new Parameter(ones(e, h, ScalarType.Float32, device));
            var c2 = new Parameter(ones(e, inter, ScalarType.Float32, device));
            var c3 = new Parameter(ones(e, h, ScalarType.Float32, device));
            var initial = Measure(x, y, experts, routing, c1, c2, c3);

            var optimizer = optim.Adam(new[] { c1, c2, c3 }, lr: settings.LearningRate);
            var batch = (int)Math.Min(settings.BatchTokens, n);
            var order = Enumerable.Range(0, (int)n).Select(i => (long)i).ToArray();
            var rng = new SplitMix64((ulong)settings.Seed);
            var position = order.Length;
            var losses = new List<double>(settings.Steps);
            var clock = Stopwatch.StartNew();
            for (var step = 0; step < settings.Steps; step++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                using var stepScope = NewDisposeScope();
                ReducedRouting part;
                Tensor xb, yb;
                if (batch == n)
                {
                    part = routing;
                    (xb, yb) = (x, y);
                }
                else
                {
                    if (position + batch > order.Length)
                    {
                        rng.Shuffle(order);
                        position = 0;
                    }
                    var rows = tensor(order.AsSpan(position, batch).ToArray(), ScalarType.Int64, device);
                    position += batch;
                    part = routing.Rows(rows);
                    xb = x.index_select(0, rows);
                    yb = y.index_select(0, rows);
                }
                var prediction = CompressedMoEForward.Routed(xb, experts, part, c1, c2, c3);
                var loss = (prediction - yb).Squared().sum() / yb.Squared().sum().AtLeast(1e-30);
                optimizer.zero_grad();
                loss.backward();
                optimizer.step();
                losses.Add(loss.item<float>());
                if (!ReferenceEquals(part, routing)) part.Dispose();
            }
            var seconds = clock.Elapsed.TotalSeconds;
            var final = Measure(x, y, experts, routing, c1, c2, c3);
            var vectors = new CompressedExpertVectors(c1.detach().cpu().clone().DetachFromDisposeScope(),
                c2.detach().cpu().clone().DetachFromDisposeScope(), c3.detach().cpu().clone().DetachFromDisposeScope(), aux);
            return (vectors, new LayerTrainingResult(block.Layer, n, losses, initial, final, seconds));
        }
        finally
        {
            if (!onCpu)
                foreach (var copy in experts) copy.Dispose();
        }
    }

    /// <summary>Relative squared error ‖ŷ − y‖² / ‖y‖² over all rows, in chunks.</summary>
    private static double Measure(Tensor x, Tensor y, IReadOnlyList<GatedMlp> experts, ReducedRouting routing, Tensor c1, Tensor c2, Tensor c3)
    {
        using var noGrad = no_grad();
        double diff = 0, total = 0;
        var n = x.shape[0];
        for (long start = 0; start < n; start += MeasureChunk)
        {
            using var scope = NewDisposeScope();
            var count = Math.Min(MeasureChunk, n - start);
            var rows = ScalarOps.Range(start, start + count, 1, device: x.device);
            using var part = routing.Rows(rows);
            var prediction = CompressedMoEForward.Routed(x.narrow(0, start, count), experts, part, c1, c2, c3);
            var target = y.narrow(0, start, count);
            diff += (prediction - target).Squared().sum().to(ScalarType.Float64).item<double>();
            total += target.Squared().sum().to(ScalarType.Float64).item<double>();
        }
        return total > 0 ? diff / total : 0;
    }

    private static GatedMlp CopyTo(GatedMlp mlp, Device device) =>
        new(mlp.Gate.to(ScalarType.Float32).to(device), mlp.Up.to(ScalarType.Float32).to(device), mlp.Down.to(ScalarType.Float32).to(device),
            mlp.Activation, mlp.GateBias?.to(device), mlp.UpBias?.to(device), mlp.DownBias?.to(device));
}
