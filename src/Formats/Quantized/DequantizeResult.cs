using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using MoECompress.Formats.Safetensors;

namespace MoECompress.Formats.Quantized;

/// <summary>What <see cref="Dequantizer.Run"/> wrote.</summary>
/// <param name="Destination">Full path of the new checkpoint.</param>
/// <param name="QuantMethod">The input's quant_method ("gptq" or "compressed-tensors").</param>
/// <param name="ModulesDequantized">Packed Linear modules written back as dense weights.</param>
/// <param name="TensorCount">Tensors in the output.</param>
/// <param name="InputTensorBytes">Tensor bytes of the input (packed).</param>
/// <param name="OutputTensorBytes">Tensor bytes of the output.</param>
/// <param name="DType">dtype of the dequantized weights.</param>
/// <param name="AuxiliaryFiles">Non-weight files copied (tokenizer, generation config, ...).</param>
/// <param name="Elapsed">Wall time.</param>
public sealed record DequantizeResult(string Destination, string QuantMethod, int ModulesDequantized, int TensorCount,
    long InputTensorBytes, long OutputTensorBytes, SafetensorsDType DType, IReadOnlyList<string> AuxiliaryFiles, TimeSpan Elapsed)
{
    /// <summary>The result as a JSON object (for --json output and reports).</summary>
    public JsonObject ToJson() => new()
    {
        ["destination"] = Destination,
        ["quant_method"] = QuantMethod,
        ["modules_dequantized"] = ModulesDequantized,
        ["tensor_count"] = TensorCount,
        ["input_tensor_bytes"] = InputTensorBytes,
        ["output_tensor_bytes"] = OutputTensorBytes,
        ["dtype"] = DType.ToHeaderName(),
        ["auxiliary_files"] = new JsonArray(AuxiliaryFiles.Select(f => (JsonNode)f).ToArray()),
        ["elapsed_seconds"] = Math.Round(Elapsed.TotalSeconds, 3),
    };

    /// <summary>A short Markdown summary.</summary>
    public string ToMarkdown()
    {
        var c = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.AppendLine("# Dequantized checkpoint");
        sb.AppendLine();
        sb.AppendLine("| | |");
        sb.AppendLine("|---|---|");
        sb.AppendLine(c, $"| output | `{Destination}` |");
        sb.AppendLine(c, $"| from | {QuantMethod} |");
        sb.AppendLine(c, $"| modules dequantized | {ModulesDequantized:N0} (as {DType.ToHeaderName()}) |");
        sb.AppendLine(c, $"| tensors | {TensorCount:N0} |");
        sb.AppendLine(c, $"| size | {InputTensorBytes / 1e6:0.0} MB → {OutputTensorBytes / 1e6:0.0} MB |");
        sb.AppendLine(c, $"| elapsed | {Elapsed.TotalSeconds:0.0} s |");
        return sb.ToString();
    }

    /// <inheritdoc/>
    public override string ToString() => ToJson().ToJsonString(new JsonSerializerOptions { WriteIndented = true });
}
