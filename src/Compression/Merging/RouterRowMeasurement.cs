using MoECompress.Compression.Model;
using MoECompress.Compression.Surgery;
using static TorchSharp.torch;

namespace MoECompress.Compression.Merging;

/// <summary>
/// Measures, while calibration tokens stream through the original model, how well the merged MoE block reproduces each
/// original block's output under both router-row rules: for every micro-batch it builds the merged block (merged
/// experts from <see cref="MergedExpertWeights"/>, unmerged ones and the shared experts taken from the original block,
/// router rows per <see cref="MergedRouterRows"/>) and accumulates ‖block'(x) − block(x)‖² and ‖block(x)‖² over the
/// tokens. <see cref="Error"/> is their ratio.
/// </summary>
public sealed class RouterRowMeasurement : ILayerObserver, IDisposable
{
    private static readonly RouterRowRule[] Rules = [RouterRowRule.Representative, RouterRowRule.Weighted];

    private readonly MergedExpertWeights _weights;
    private readonly IReadOnlyDictionary<int, IReadOnlyList<ExpertCluster>> _layers;
    private readonly Dictionary<(int Layer, RouterRowRule Rule), double> _errorSums = new();
    private readonly Dictionary<int, double> _outputSums = new();
    private readonly Dictionary<int, long> _tokens = new();
    private int _builtLayer = -1;
    private readonly Dictionary<RouterRowRule, MergedMoEBlock> _blocks = new();

    /// <param name="weights">Merged experts (computed layer by layer on first use).</param>
    /// <param name="layers">Routed layer → its clusters in output order; other layers are ignored.</param>
    public RouterRowMeasurement(MergedExpertWeights weights, IReadOnlyDictionary<int, IReadOnlyList<ExpertCluster>> layers)
    {
        _weights = weights ?? throw new ArgumentNullException(nameof(weights));
        _layers = layers ?? throw new ArgumentNullException(nameof(layers));
    }

    /// <summary>‖merged block(x) − block(x)‖² / ‖block(x)‖² over the tokens seen in <paramref name="layer"/>, or null when none.</summary>
    public double? Error(int layer, RouterRowRule rule) =>
        _errorSums.TryGetValue((layer, rule), out var num) && _outputSums.TryGetValue(layer, out var den)
            ? den > 0 ? num / den : num == 0 ? 0 : double.PositiveInfinity
            : null;

    /// <summary>Tokens measured in <paramref name="layer"/>.</summary>
    public long Tokens(int layer) => _tokens.GetValueOrDefault(layer);

    /// <inheritdoc />
    public void OnMoEBlock(MoEBlockActivation activation)
    {
        if (!_layers.TryGetValue(activation.Layer, out var clusters)) return;
        using var scope = NewDisposeScope();
        Build(activation, clusters);
        var output = activation.Output.to(ScalarType.Float64);
        _outputSums[activation.Layer] = _outputSums.GetValueOrDefault(activation.Layer) + output.Squared().sum().item<double>();
        _tokens[activation.Layer] = _tokens.GetValueOrDefault(activation.Layer) + activation.Input.shape[0];
        foreach (var rule in Rules)
        {
            var y = _blocks[rule].Block.Forward(activation.Input);
            var err = (y.to(ScalarType.Float64) - output).Squared().sum().item<double>();
            _errorSums[(activation.Layer, rule)] = _errorSums.GetValueOrDefault((activation.Layer, rule)) + err;
        }
    }

    /// <inheritdoc />
    public void OnLayerEnd(DecoderLayer layer)
    {
        if (layer.Index == _builtLayer) ReleaseBuilt();
    }

    private void Build(MoEBlockActivation activation, IReadOnlyList<ExpertCluster> clusters)
    {
        if (_builtLayer == activation.Layer) return;
        ReleaseBuilt();
        var merged = _weights.Layer(activation.Layer);
        foreach (var rule in Rules) _blocks[rule] = MergedMoEBlock.Build(activation.Block, merged, clusters, rule);
        _builtLayer = activation.Layer;
    }

    private void ReleaseBuilt()
    {
        foreach (var b in _blocks.Values) b.Dispose();
        _blocks.Clear();
        _builtLayer = -1;
    }

    /// <summary>Releases the routers built for the current layer.</summary>
    public void Dispose() => ReleaseBuilt();
}
