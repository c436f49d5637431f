using static TorchSharp.torch;

namespace MoECompress.Compression.Model;

/// <summary>A decoder layer's input and output hidden states for one micro-batch [B, L, H]. Valid only during the callback.</summary>
public sealed class LayerActivation
{
    internal LayerActivation(int layer, MicroBatch batch, Tensor input, Tensor output)
    {
        Layer = layer;
        Batch = batch;
        Input = input;
        Output = output;
    }

    public int Layer { get; }
    public MicroBatch Batch { get; }
    /// <summary>Hidden states entering the layer [B, L, H].</summary>
    public Tensor Input { get; }
    /// <summary>Hidden states leaving the layer [B, L, H].</summary>
    public Tensor Output { get; }
}
