using MoECompress.Compression.Model;
using static TorchSharp.torch;

namespace MoECompress.Compression.Importance;

/// <summary>
/// Caches the input and routed output of the chosen MoE layers during a calibration pass and, when a layer has seen
/// every micro-batch (its weights still loaded), hands a <see cref="MaskedBlockError"/> over them to a callback; the
/// cache is released right after. Holds at most one layer's tokens (2 × N × H floats).
/// </summary>
internal sealed class NaeeObserver(IReadOnlySet<int> layers, Action<int, MaskedBlockError> onLayer) : ILayerObserver, IDisposable
{
    private readonly List<(Tensor Input, Tensor RoutedOutput)> _chunks = new();
    private int _cachedLayer = -1;

    public void OnMoEBlock(MoEBlockActivation activation)
    {
        if (!layers.Contains(activation.Layer)) return;
        if (_cachedLayer != activation.Layer)
        {
            Release();
            _cachedLayer = activation.Layer;
        }
        var x = activation.Input.detach().clone().DetachFromDisposeScope();
        var y = activation.RoutedOutput.detach().clone().DetachFromDisposeScope();
        _chunks.Add((x, y));
    }

    public void OnLayerEnd(DecoderLayer layer)
    {
        try
        {
            if (layer.MoE is not null && _cachedLayer == layer.Index && _chunks.Count > 0)
                onLayer(layer.Index, new MaskedBlockError(layer.MoE, _chunks));
        }
        finally
        {
            Release();
        }
    }

    private void Release()
    {
        foreach (var (x, y) in _chunks)
        {
            x.Dispose();
            y.Dispose();
        }
        _chunks.Clear();
        _cachedLayer = -1;
    }

    public void Dispose() => Release();
}
