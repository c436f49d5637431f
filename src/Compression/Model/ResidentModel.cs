using static TorchSharp.torch;

namespace MoECompress.Compression.Model;

/// <summary>
/// The whole model in memory (every layer resident): one pass per sequence. Meant for small models, tests and as the
/// reference the streaming path is checked against; it runs the same <see cref="DecoderLayer"/> code. Owns its weights.
/// </summary>
public sealed class ResidentModel : IDisposable
{
    internal ResidentModel(ModelEngine engine, EmbeddingTable embedding, IReadOnlyList<DecoderLayer> layers, OutputHead head)
    {
        Engine = engine;
        Embedding = embedding;
        Layers = layers;
        Head = head;
    }

    public ModelEngine Engine { get; }
    public EmbeddingTable Embedding { get; }
    public IReadOnlyList<DecoderLayer> Layers { get; }
    public OutputHead Head { get; }

    /// <summary>Logits [L, V] (float32) of one sequence. The caller disposes the result.</summary>
    public Tensor Forward(IReadOnlyList<int> tokens, ILayerObserver? observer = null, int sequenceIndex = 0)
    {
        using var scope = NewDisposeScope();
        var hidden = HiddenStates(tokens, observer, sequenceIndex);
        return Head.Logits(hidden[0]).MoveToOuterDisposeScope();
    }

    /// <summary>Last decoder layer output [1, L, H] (before the final norm). The caller disposes the result.</summary>
    public Tensor HiddenStates(IReadOnlyList<int> tokens, ILayerObserver? observer = null, int sequenceIndex = 0)
    {
        if (tokens.Count == 0) throw new ArgumentException("a sequence needs at least one token", nameof(tokens));
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var batch = new MicroBatch(new[] { sequenceIndex }, tokens.Count);
        using var rope = Engine.Rotary.Tables(tokens.Count);
        var h = Embedding.Lookup(tokens, sequenceIndex).unsqueeze(0);
        foreach (var layer in Layers)
        {
            observer?.OnLayerStart(layer);
            var next = layer.Forward(h, rope, observer, batch);
            h.Dispose();
            h = next;
            observer?.OnLayerEnd(layer);
        }
        return h.MoveToOuterDisposeScope();
    }

    public void Dispose()
    {
        Embedding.Dispose();
        foreach (var l in Layers) l.Dispose();
        Head.Dispose();
    }
}
