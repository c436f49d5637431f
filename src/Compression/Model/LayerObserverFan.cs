namespace MoECompress.Compression.Model;

/// <summary>Forwards every callback to several observers, in order (null entries are skipped).</summary>
public sealed class LayerObserverFan(params ILayerObserver?[] observers) : ILayerObserver
{
    private readonly ILayerObserver[] _observers = observers.Where(o => o is not null).ToArray()!;

    /// <inheritdoc />
    public void OnLayerStart(DecoderLayer layer) { foreach (var o in _observers) o.OnLayerStart(layer); }
    /// <inheritdoc />
    public void OnExpert(ExpertActivation activation) { foreach (var o in _observers) o.OnExpert(activation); }
    /// <inheritdoc />
    public void OnMoEBlock(MoEBlockActivation activation) { foreach (var o in _observers) o.OnMoEBlock(activation); }
    /// <inheritdoc />
    public void OnLayerOutput(LayerActivation activation) { foreach (var o in _observers) o.OnLayerOutput(activation); }
    /// <inheritdoc />
    public void OnLayerEnd(DecoderLayer layer) { foreach (var o in _observers) o.OnLayerEnd(layer); }
}
