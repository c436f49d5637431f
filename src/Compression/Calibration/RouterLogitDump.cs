namespace MoECompress.Compression.Calibration;

/// <summary>
/// Raw router logits of every calibration token, for inspection: per MoE layer a row-major [N, E] float32 matrix whose
/// rows are the tokens of sequence 0, then sequence 1, … (each in position order).
/// </summary>
public sealed class RouterLogitDump
{
    /// <summary>Creates the dump; every matrix must be [Σ lengths, E].</summary>
    public RouterLogitDump(IReadOnlyList<int> sequenceLengths, int numExperts, IReadOnlyDictionary<int, float[]> layers,
        IReadOnlyList<int[]>? tokenIds = null)
    {
        var n = sequenceLengths.Sum(l => (long)l);
        foreach (var (layer, values) in layers)
            if (values.LongLength != n * numExperts)
                throw new ArgumentException($"layer {layer}: router logits hold {values.LongLength} values, expected {n}x{numExperts}");
        if (tokenIds is not null && (tokenIds.Count != sequenceLengths.Count || tokenIds.Where((t, i) => t.Length != sequenceLengths[i]).Any()))
            throw new ArgumentException("token ids do not match the sequence lengths");
        SequenceLengths = sequenceLengths;
        NumExperts = numExperts;
        Layers = layers;
        TokenIds = tokenIds;
    }

    /// <summary>Length of each calibration sequence, in row order.</summary>
    public IReadOnlyList<int> SequenceLengths { get; }
    /// <summary>N: total rows.</summary>
    public long Tokens => SequenceLengths.Sum(l => (long)l);
    /// <summary>E.</summary>
    public int NumExperts { get; }
    /// <summary>Decoder layer index → logits [N·E], row-major.</summary>
    public IReadOnlyDictionary<int, float[]> Layers { get; }
    /// <summary>The token ids of each sequence (written with the dump when known), or null.</summary>
    public IReadOnlyList<int[]>? TokenIds { get; }

    /// <summary>Tensor name of a layer's logits in the dump file.</summary>
    public static string TensorName(int layer) => $"layers.{layer}.router_logits";
    /// <summary>Tensor name of the sequence lengths [S] (int64).</summary>
    public const string SequenceLengthsName = "sequence_lengths";
    /// <summary>Tensor name of the token ids [N] (int64), present when known.</summary>
    public const string TokenIdsName = "input_ids";
}
