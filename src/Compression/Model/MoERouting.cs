using static TorchSharp.torch;

namespace MoECompress.Compression.Model;

/// <summary>
/// The routing decision of one MoE block for T tokens. Owns its tensors.
/// </summary>
public sealed class MoERouting : IDisposable
{
    public MoERouting(Tensor logits, Tensor scores, Tensor topKIndices, Tensor topKWeights)
    {
        Logits = logits;
        Scores = scores;
        TopKIndices = topKIndices;
        TopKWeights = topKWeights;
    }

    /// <summary>Router logits z = x·Wᵀ (+ router bias) [T, E].</summary>
    public Tensor Logits { get; }
    /// <summary>Router probabilities: softmax(z) or sigmoid(z) [T, E] (without correction bias).</summary>
    public Tensor Scores { get; }
    /// <summary>Chosen experts [T, k] (int64), best first.</summary>
    public Tensor TopKIndices { get; }
    /// <summary>Gate weights of the chosen experts [T, k] (float32): normalised and scaled as the model does.</summary>
    public Tensor TopKWeights { get; }
    public long TokenCount => Logits.shape[0];
    public long NumExperts => Logits.shape[1];
    public long TopK => TopKIndices.shape[1];

    public void Dispose()
    {
        Logits.Dispose();
        Scores.Dispose();
        TopKIndices.Dispose();
        TopKWeights.Dispose();
    }
}
