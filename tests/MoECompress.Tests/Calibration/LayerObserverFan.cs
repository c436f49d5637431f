using MoECompress.Compression.Model;

namespace MoECompress.Tests.Calibration;

/// <summary>Forwards every callback to several observers, in order.</summary>
internal sealed class LayerObserverFan(params ILayerObserver[] observers) : ILayerObserver
{
    public void OnLayerStart(DecoderLayer layer) { foreach (var o in observers) o.OnLayerStart(layer); }
    public void OnExpert(ExpertActivation activation) { foreach (var o in observers) o.OnExpert(activation); }
    public void OnMoEBlock(MoEBlockActivation activation) { foreach (var o in observers) o.OnMoEBlock(activation); }
    public void OnLayerOutput(LayerActivation activation) { foreach (var o in observers) o.OnLayerOutput(activation); }
    public void OnLayerEnd(DecoderLayer layer) { foreach (var o in observers) o.OnLayerEnd(layer); }
}
