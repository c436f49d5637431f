using MoECompress.Compression.Model;

namespace MoECompress.Compression.Calibration;

/// <summary>
/// An <see cref="ILayerObserver"/> that gathers the calibration statistics of every MoE layer while the forward
/// engine runs (streaming or resident): router statistics from <see cref="ILayerObserver.OnMoEBlock"/>, expert
/// statistics from <see cref="ILayerObserver.OnExpert"/> (definitions: <see cref="MoELayerStatistics"/>). Memory is
/// E×H values per layer; input Hessians are not collected here (see <see cref="LayerHessianCollector"/>).
/// Nothing is run twice: the statistics come from the tensors the engine computes anyway (except
/// <see cref="CalibrationCollectorOptions.MeanOutputOverAllTokens"/>, which runs every expert on every token).
/// Callbacks must come from one thread at a time (the engine's order). Call <see cref="Build"/> after the run.
/// </summary>
public sealed class CalibrationCollector : ILayerObserver, IDisposable
{
    private readonly SortedDictionary<int, MoELayerAccumulator> _layers = new();
    private bool _disposed;

    /// <summary>Creates a collector.</summary>
    /// <param name="options">What to gather; null for the defaults.</param>
    public CalibrationCollector(CalibrationCollectorOptions? options = null)
    {
        Options = options ?? new CalibrationCollectorOptions();
        Options.Validate();
    }

    /// <summary>What is gathered.</summary>
    public CalibrationCollectorOptions Options { get; }

    /// <summary>Decoder layers seen so far that have a MoE block.</summary>
    public IReadOnlyCollection<int> Layers => _layers.Keys;

    /// <inheritdoc />
    public void OnExpert(ExpertActivation activation)
    {
        var acc = Accumulator(activation.Layer, (int)activation.Routing.NumExperts, (int)activation.Routing.TopK,
            (int)activation.Input.shape[1], (int)activation.Intermediate.shape[1]);
        acc.AddExpert(activation);
    }

    /// <inheritdoc />
    public void OnMoEBlock(MoEBlockActivation activation)
    {
        var block = activation.Block;
        var acc = Accumulator(activation.Layer, block.Experts.Count, block.Router.Spec.TopK,
            (int)activation.Input.shape[1], (int)block.Experts[0].IntermediateSize);
        acc.AddBlock(activation);
    }

    private MoELayerAccumulator Accumulator(int layer, int numExperts, int topK, int hidden, int intermediate)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_layers.TryGetValue(layer, out var acc))
            acc.CheckShape(numExperts, topK, hidden, intermediate);
        else
            _layers[layer] = acc = new MoELayerAccumulator(layer, numExperts, topK, hidden, intermediate, Options);
        return acc;
    }

    /// <summary>Statistics of every MoE layer seen, by layer index.</summary>
    public IReadOnlyList<MoELayerStatistics> BuildLayers()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return _layers.Values.Select(a => a.Build()).ToList();
    }

    /// <summary>Statistics of MoE layer <paramref name="layer"/> (decoder index), which must have been seen.</summary>
    public MoELayerStatistics BuildLayer(int layer)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return _layers.TryGetValue(layer, out var acc) ? acc.Build()
            : throw new InvalidOperationException($"layer {layer} has not been observed (observed: {string.Join(", ", _layers.Keys)})");
    }

    /// <summary>
    /// The calibration profile: the layers' statistics, the super experts (rule of <see cref="SuperExpertReport"/> over
    /// <see cref="CalibrationModelInfo.NumLayers"/>) and the cold experts (<see cref="CalibrationCollectorOptions.ColdThreshold"/>).
    /// </summary>
    /// <param name="model">What model ran (also gives the layer count for the super-expert rule).</param>
    /// <param name="data">Where the tokens came from, or null.</param>
    /// <exception cref="InvalidOperationException">No MoE layer was observed.</exception>
    public CalibrationProfile Build(CalibrationModelInfo model, CalibrationDataInfo? data = null)
    {
        var layers = BuildLayers();
        if (layers.Count == 0) throw new InvalidOperationException("no MoE layer was observed: run the model with this collector first");
        return CalibrationProfile.Create(model, data, Options, layers);
    }

    /// <summary>
    /// Every token's router logits per MoE layer, rows in sequence order, or null unless
    /// <see cref="CalibrationCollectorOptions.KeepRouterLogits"/> is set.
    /// </summary>
    /// <param name="tokenIds">The sequences' token ids, recorded with the dump when given.</param>
    /// <exception cref="InvalidOperationException">A layer did not see every sequence from 0 to the largest index.</exception>
    public RouterLogitDump? BuildRouterLogits(IReadOnlyList<int[]>? tokenIds = null)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!Options.KeepRouterLogits || _layers.Count == 0) return null;
        var first = _layers.Values.First();
        var sequences = first.RouterLogits!.Keys.DefaultIfEmpty(-1).Max() + 1;
        var lengths = new int[sequences];
        for (var s = 0; s < sequences; s++)
        {
            if (!first.RouterLogits.TryGetValue(s, out var part))
                throw new InvalidOperationException($"layer {first.Layer}: no router logits for sequence {s}");
            lengths[s] = part.Length / first.NumExperts;
        }
        var total = lengths.Sum(l => (long)l);
        var layers = new Dictionary<int, float[]>();
        foreach (var acc in _layers.Values)
        {
            if (acc.NumExperts != first.NumExperts)
                throw new InvalidOperationException($"layer {acc.Layer} has {acc.NumExperts} experts, layer {first.Layer} {first.NumExperts}");
            var all = new float[total * acc.NumExperts];
            long offset = 0;
            for (var s = 0; s < sequences; s++)
            {
                if (!acc.RouterLogits!.TryGetValue(s, out var part) || part.Length != lengths[s] * acc.NumExperts)
                    throw new InvalidOperationException($"layer {acc.Layer}: router logits of sequence {s} are missing or of another length");
                Array.Copy(part, 0, all, offset, part.Length);
                offset += part.Length;
            }
            layers[acc.Layer] = all;
        }
        return new RouterLogitDump(lengths, first.NumExperts, layers, tokenIds);
    }

    /// <summary>Drops the accumulated sums.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _layers.Clear();
    }
}
