namespace MoECompress.Compression.Model;

/// <summary>
/// Receives what happens inside the decoder layers while a model runs (streaming or resident), e.g. to collect
/// calibration statistics, Hessians or per-layer errors without running a layer twice. All methods have empty
/// defaults: implement only what you need. Tensors handed to a callback are owned by the engine and valid only during
/// the call: copy (<c>clone()</c>) or reduce them before returning, never dispose them.
/// Call order per layer: <see cref="OnLayerStart"/>, then per micro-batch: <see cref="OnExpert"/> for each expert
/// that received tokens (expert order), <see cref="OnMoEBlock"/>, <see cref="OnLayerOutput"/>; finally
/// <see cref="OnLayerEnd"/>.
/// </summary>
public interface ILayerObserver
{
    /// <summary>A decoder layer's weights are loaded and it is about to run.</summary>
    void OnLayerStart(DecoderLayer layer) { }

    /// <summary>One routed expert's inputs, down_proj inputs and outputs for the tokens routed to it in a micro-batch.</summary>
    void OnExpert(ExpertActivation activation) { }

    /// <summary>A MoE block finished a micro-batch: its input, routing and outputs, and the block itself for what-if runs.</summary>
    void OnMoEBlock(MoEBlockActivation activation) { }

    /// <summary>A decoder layer finished a micro-batch: its input and output hidden states.</summary>
    void OnLayerOutput(LayerActivation activation) { }

    /// <summary>A decoder layer has processed every sequence; its weights are released after this call.</summary>
    void OnLayerEnd(DecoderLayer layer) { }
}
