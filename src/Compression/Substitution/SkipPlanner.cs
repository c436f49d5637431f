using MoECompress.Compression.Calibration;
using MoECompress.Compression.Data;
using MoECompress.Compression.Model;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Families;
using static TorchSharp.torch;

namespace MoECompress.Compression.Substitution;

/// <summary>Options of <see cref="SkipPlanner.Run"/> (the <c>moe-compress skip-plan</c> command).</summary>
public sealed record SkipPlanOptions
{
    /// <summary>The model folder.</summary>
    public required string Model { get; init; }
    /// <summary>μ_l is this quantile of the layer's calibration w₂/w₁ (default 0.5, the median).</summary>
    public double Quantile { get; init; } = 0.5;
    /// <summary>Fraction of calibration tokens with the largest MoE-block input norm that are never skipped (default 0.02).</summary>
    public double ProtectFraction { get; init; } = 0.02;
    /// <summary>Calibration text; null = the bundled calibration set.</summary>
    public string? Data { get; init; }
    public CalibrationDataOptions DataOptions { get; init; } = new();
}

/// <summary>
/// Builds a <see cref="SkipPlan"/> from one calibration pass: per MoE layer the quantile of the second-to-first routing
/// weight ratio w₂/w₁ over the calibration tokens (μ_l) and the block-input norm above which the top
/// <see cref="SkipPlanOptions.ProtectFraction"/> of tokens lie.
/// </summary>
public static class SkipPlanner
{
    /// <exception cref="MoeCompressException">Usage: bad quantile/fraction or data; Infeasible: top-k below 2 or no forward pass.</exception>
    public static SkipPlan Run(SkipPlanOptions options, IProgress<string>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (!(options.Quantile is >= 0 and <= 1)) throw new MoeCompressException(ErrorKind.Usage, $"--quantile {options.Quantile}: must be between 0 and 1");
        if (!(options.ProtectFraction is >= 0 and < 1)) throw new MoeCompressException(ErrorKind.Usage, $"--protect {options.ProtectFraction}: must be in [0, 1)");
        var dir = Path.GetFullPath(options.Model);
        if (!Directory.Exists(dir)) throw new MoeCompressException(ErrorKind.Usage, $"{dir}: model folder not found");
        using var checkpoint = ModelCheckpoint.Open(dir, cancellationToken: cancellationToken);
        if (checkpoint.MoE.TopK < 2)
            throw new MoeCompressException(ErrorKind.Infeasible, $"{checkpoint.ConfigPath}: top-{checkpoint.MoE.TopK} routing has no second expert to skip");
        ModelEngine.EnsureSupported(checkpoint.Family, checkpoint.Config);
        var set = CalibrationPass.LoadTokens(checkpoint, options.Data, options.DataOptions, progress, cancellationToken);
        var observer = new RatioObserver();
        CalibrationPass.Run(checkpoint, set, observer, null, progress, cancellationToken);

        var k = checkpoint.MoE.TopK;
        var layers = new List<SkipPlanLayer>();
        foreach (var (layer, (ratios, norms)) in observer.Layers.OrderBy(kv => kv.Key))
        {
            var mu = Quantile(ratios, options.Quantile);
            var threshold = options.ProtectFraction == 0 ? double.PositiveInfinity : Quantile(norms, 1 - options.ProtectFraction);
            long skipped = 0;
            for (var i = 0; i < ratios.Count; i++)
                if (ratios[i] < mu && norms[i] < threshold) skipped++;
            layers.Add(new SkipPlanLayer(layer, mu, threshold, ratios.Count == 0 ? 0 : (double)skipped / ((long)ratios.Count * k)));
            progress?.Report($"layer {layer}: μ = {mu:G4}, protected above norm {threshold:G4}, {100.0 * layers[^1].CalibrationSkippedFraction:F1}% of expert calls skipped on calibration tokens");
        }
        return new SkipPlan
        {
            Model = checkpoint.Directory,
            Quantile = options.Quantile,
            ProtectFraction = options.ProtectFraction,
            CalibrationTokens = set.Sequences.Sum(s => (long)s.Length),
            Layers = layers,
        };
    }

    /// <summary>The q-quantile of <paramref name="values"/> with linear interpolation between order statistics.</summary>
    internal static double Quantile(List<float> values, double q)
    {
        if (values.Count == 0) return 0;
        var sorted = values.Order().ToArray();
        var position = q * (sorted.Length - 1);
        var lo = (int)Math.Floor(position);
        var hi = Math.Min(lo + 1, sorted.Length - 1);
        return sorted[lo] + (position - lo) * (sorted[hi] - sorted[lo]);
    }

    /// <summary>Per MoE layer: w₂/w₁ and the block-input L2 norm of every calibration token.</summary>
    private sealed class RatioObserver : ILayerObserver
    {
        public Dictionary<int, (List<float> Ratios, List<float> Norms)> Layers { get; } = new();

        public void OnMoEBlock(MoEBlockActivation activation)
        {
            using var scope = NewDisposeScope();
            var (w, _) = activation.Routing.TopKWeights.sort(1, descending: true);
            var ratio = (w.select(1, 1) / w.select(1, 0).AtLeast(float.Epsilon)).cpu().data<float>().ToArray();
            var norms = activation.Input.to(ScalarType.Float32).Squared().sum(1).sqrt().cpu().data<float>().ToArray();
            if (!Layers.TryGetValue(activation.Layer, out var lists)) Layers[activation.Layer] = lists = (new List<float>(), new List<float>());
            lists.Ratios.AddRange(ratio);
            lists.Norms.AddRange(norms);
        }
    }
}
