namespace MoECompress.Formats.Quantized;

/// <summary>One Linear module stored packed in a checkpoint, as <see cref="QuantizedTensorSource"/> found it.</summary>
/// <param name="Prefix">Module name, e.g. "model.layers.0.block_sparse_moe.experts.3.w1".</param>
/// <param name="Format">GPTQ or compressed-tensors.</param>
/// <param name="Scheme">Bits, group size and symmetry the config declares for it.</param>
/// <param name="OutFeatures">Rows of W.</param>
/// <param name="InFeatures">Columns of W.</param>
/// <param name="Groups">Scale groups per row as stored.</param>
/// <param name="Parts">The stored tensors (qweight, qzeros, ... or weight_packed, weight_scale, ...).</param>
public sealed record PackedModule(string Prefix, QuantizedFormat Format, PackedScheme Scheme, int OutFeatures, int InFeatures,
    int Groups, IReadOnlyList<string> Parts)
{
    /// <summary>The name under which the dequantized weight is presented: <c>Prefix.weight</c>.</summary>
    public string WeightName => Prefix + ".weight";
}
