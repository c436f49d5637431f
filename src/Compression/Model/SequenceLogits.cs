using static TorchSharp.torch;

namespace MoECompress.Compression.Model;

/// <summary>
/// A chunk of one sequence's logits: rows <see cref="Start"/> … Start + n − 1 of sequence <see cref="SequenceIndex"/>.
/// <see cref="Logits"/> [n, V] is owned by the engine and valid only during the callback.
/// </summary>
public sealed class SequenceLogits
{
    internal SequenceLogits(int sequenceIndex, IReadOnlyList<int> tokens, int start, Tensor logits)
    {
        SequenceIndex = sequenceIndex;
        Tokens = tokens;
        Start = start;
        Logits = logits;
    }

    public int SequenceIndex { get; }
    /// <summary>The whole input sequence (position Start + i of the chunk predicts token Start + i + 1).</summary>
    public IReadOnlyList<int> Tokens { get; }
    /// <summary>Position of the chunk's first row in the sequence.</summary>
    public int Start { get; }
    /// <summary>Logits [n, V], float32.</summary>
    public Tensor Logits { get; }
    public int Count => (int)Logits.shape[0];
    /// <summary>True when this chunk holds the sequence's last position.</summary>
    public bool IsLast => Start + Count == Tokens.Count;

    /// <summary>log_softmax of the logits [n, V] (new tensor, caller disposes).</summary>
    public Tensor LogProbs() => Logits.log_softmax(-1);

    /// <summary>
    /// log p(next token) for each row whose next token exists in the sequence (rows up to position L−2): a new float
    /// array of length Count, or Count − 1 for the last chunk.
    /// </summary>
    public float[] NextTokenLogProbs()
    {
        var rows = IsLast ? Count - 1 : Count;
        if (rows <= 0) return Array.Empty<float>();
        using var scope = NewDisposeScope();
        var targets = tensor(Enumerable.Range(Start + 1, rows).Select(p => (long)Tokens[p]).ToArray(), ScalarType.Int64, Logits.device);
        var lp = Logits.narrow(0, 0, rows).log_softmax(-1).gather(1, targets.unsqueeze(1)).squeeze(1);
        return lp.cpu().data<float>().ToArray();
    }
}
