using TorchSharp;
using MoECompress.Formats.Errors;
using static TorchSharp.torch;

namespace MoECompress.Compression.Model;

/// <summary>
/// The token embedding table, kept in its stored dtype (bf16 stays bf16: half the memory of float32); looked-up rows
/// are returned as float32. Owns its tensor.
/// </summary>
public sealed class EmbeddingTable : IDisposable
{
    public EmbeddingTable(Tensor weight)
    {
        if (weight.dim() != 2) throw new ArgumentException("embedding table must be [V, H]", nameof(weight));
        Weight = weight;
    }

    /// <summary>GraniteMoE embedding_multiplier applied to looked-up rows (1 for other models).</summary>
    public double Multiplier { get; init; } = 1.0;

    /// <summary>[V, H] in the checkpoint's dtype.</summary>
    public Tensor Weight { get; }
    public long VocabSize => Weight.shape[0];
    public long HiddenSize => Weight.shape[1];

    /// <summary>Embeddings [L, H] (float32, times <see cref="Multiplier"/>) of a token sequence; ids outside the vocabulary throw Usage.</summary>
    public Tensor Lookup(IReadOnlyList<int> tokens, int sequenceIndex = 0)
    {
        for (var i = 0; i < tokens.Count; i++)
            if (tokens[i] < 0 || tokens[i] >= VocabSize)
                throw new MoeCompressException(ErrorKind.Usage,
                    $"token id {tokens[i]} at position {i} of sequence {sequenceIndex} is outside the model vocabulary (vocab_size {VocabSize}); tokenizer and model disagree");
        using var scope = NewDisposeScope();
        var ids = tensor(tokens.Select(t => (long)t).ToArray(), ScalarType.Int64, Weight.device);
        var rows = Weight.index_select(0, ids).to(ScalarType.Float32);
        if (Multiplier != 1.0)
        {
            using var m = Multiplier.ToScalar();
            rows = rows.mul(m);
        }
        return rows.MoveToOuterDisposeScope();
    }

    public void Dispose() => Weight.Dispose();
}
