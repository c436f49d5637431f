using MoECompress.Compression.Model;

namespace MoECompress.Tests.Model;

/// <summary>An observer made of delegates (tests).</summary>
internal sealed class DelegateObserver(
    Action<ExpertActivation>? onExpert = null,
    Action<MoEBlockActivation>? onMoEBlock = null,
    Action<LayerActivation>? onLayerOutput = null,
    Action<DecoderLayer>? onLayerStart = null,
    Action<DecoderLayer>? onLayerEnd = null) : ILayerObserver
{
    public void OnExpert(ExpertActivation activation) => onExpert?.Invoke(activation);
    public void OnMoEBlock(MoEBlockActivation activation) => onMoEBlock?.Invoke(activation);
    public void OnLayerOutput(LayerActivation activation) => onLayerOutput?.Invoke(activation);
    public void OnLayerStart(DecoderLayer layer) => onLayerStart?.Invoke(layer);
    public void OnLayerEnd(DecoderLayer layer) => onLayerEnd?.Invoke(layer);
}
