using MoECompress.Formats.Quantized;
using MoECompress.Formats.Safetensors;
using static TorchSharp.torch;

namespace MoECompress.Compression.Quantization;

/// <summary>
/// Writes one quantized Linear module into an output checkpoint in a <see cref="QuantizedFormat"/>: the packed GPTQ or
/// compressed-tensors tensors (see <see cref="GptqLayout"/> and <see cref="CompressedTensorsLayout"/>), or Ŵ as a dense
/// <c>prefix.weight</c>. <see cref="Specs"/> gives the tensors before anything is computed, so a
/// <see cref="CheckpointWriter"/> can be planned first; <see cref="Write"/> then fills them.
/// </summary>
public static class QuantizedModuleWriter
{
    /// <summary>
    /// The tensors module <paramref name="modulePrefix"/> (e.g. "model.layers.0.block_sparse_moe.experts.3.w1") becomes:
    /// names, dtypes, shapes.
    /// </summary>
    /// <param name="modulePrefix">Module name (the weight's name without ".weight").</param>
    /// <param name="outFeatures">Rows of W.</param>
    /// <param name="inFeatures">Columns of W.</param>
    /// <param name="scheme">Bits, group size, symmetry.</param>
    /// <param name="format">Output format.</param>
    /// <param name="originalDType">dtype of the original weight: the dense output keeps it (F8 and other non-16/32-bit
    /// floats become BF16); compressed-tensors scales use it.</param>
    /// <param name="actOrder">compressed-tensors only: also store <c>weight_g_idx</c> (act-order groups). GPTQ always stores g_idx.</param>
    /// <exception cref="Formats.Errors.MoeCompressException">Usage: the scheme cannot be stored in the format (1-bit in a
    /// packed format, GPTQ dimensions that are not multiples of 32).</exception>
    public static IReadOnlyList<TensorSpec> Specs(string modulePrefix, long outFeatures, long inFeatures, QuantizationScheme scheme,
        QuantizedFormat format, SafetensorsDType originalDType, bool actOrder = false)
    {
        ArgumentNullException.ThrowIfNull(scheme);
        scheme.Validate();
        return format switch
        {
            QuantizedFormat.Gptq => GptqLayout.Specs(modulePrefix, outFeatures, inFeatures, ToPacked(scheme)),
            QuantizedFormat.CompressedTensors => CompressedTensorsLayout.Specs(modulePrefix, outFeatures, inFeatures, ToPacked(scheme),
                CompressedTensorsLayout.ScaleDType(originalDType), actOrder),
            QuantizedFormat.Dequantized => [new TensorSpec(modulePrefix + ".weight", DenseDType(originalDType), [outFeatures, inFeatures])],
            _ => throw new ArgumentOutOfRangeException(nameof(format), format, "unknown quantized format"),
        };
    }

    /// <summary>Writes the tensors <see cref="Specs"/> planned for the module (same arguments; the shape comes from <paramref name="q"/>).</summary>
    /// <exception cref="Formats.Errors.MoeCompressException">Usage as in <see cref="Specs"/>; InvalidValues: zero points the format cannot hold.</exception>
    public static void Write(CheckpointWriter writer, string modulePrefix, QuantizedMatrix q, QuantizedFormat format,
        SafetensorsDType originalDType, bool actOrder = false)
    {
        ArgumentNullException.ThrowIfNull(writer);
        foreach (var t in Encode(modulePrefix, q, format, originalDType, actOrder))
            writer.Write(t.Name, t.Data);
    }

    /// <summary>The module's tensors with their bytes (what <see cref="Write"/> writes).</summary>
    public static IReadOnlyList<EncodedTensor> Encode(string modulePrefix, QuantizedMatrix q, QuantizedFormat format,
        SafetensorsDType originalDType, bool actOrder = false)
    {
        ArgumentNullException.ThrowIfNull(q);
        switch (format)
        {
            case QuantizedFormat.Gptq:
                GptqLayout.Check(modulePrefix, q.OutFeatures, q.InFeatures, q.Scheme.Bits);
                return GptqLayout.Encode(modulePrefix, q.ToUnpacked());
            case QuantizedFormat.CompressedTensors:
                CompressedTensorsLayout.Check(modulePrefix, q.Scheme.Bits);
                return CompressedTensorsLayout.Encode(modulePrefix, q.ToUnpacked(), ToPacked(q.Scheme),
                    CompressedTensorsLayout.ScaleDType(originalDType), actOrder);
            case QuantizedFormat.Dequantized:
            {
                var dtype = DenseDType(originalDType);
                using var scope = NewDisposeScope();
                var w = q.Dequantize().to(dtype.ToScalarType()).contiguous();
                var bytes = w.bytes.ToArray();
                return [new EncodedTensor(modulePrefix + ".weight", dtype, [q.OutFeatures, q.InFeatures], bytes)];
            }
            default:
                throw new ArgumentOutOfRangeException(nameof(format), format, "unknown quantized format");
        }
    }

    /// <summary>The scheme as the packed layouts and configs describe it.</summary>
    public static PackedScheme ToPacked(QuantizationScheme scheme) =>
        new(scheme.Bits, scheme.GroupSize <= 0 ? -1 : scheme.GroupSize, scheme.Symmetric);

    /// <summary>dtype of a dense (dequantized) weight written for an original of <paramref name="originalDType"/>.</summary>
    public static SafetensorsDType DenseDType(SafetensorsDType originalDType) =>
        originalDType is SafetensorsDType.F16 or SafetensorsDType.BF16 or SafetensorsDType.F32 ? originalDType : SafetensorsDType.BF16;
}
