using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;

namespace MoECompress.Compression.Surgery;

/// <summary>What <see cref="ExpertSurgery.Write"/> produced.</summary>
/// <param name="OutputDirectory">Full path of the written checkpoint.</param>
/// <param name="InputExperts">Routed experts per MoE layer before (E).</param>
/// <param name="OutputExperts">Routed experts per MoE layer after (E').</param>
/// <param name="InputTensorBytes">Sum of the input's tensor bytes.</param>
/// <param name="OutputTensorBytes">Sum of the output's tensor bytes.</param>
/// <param name="TensorsWritten">Tensors in the output.</param>
/// <param name="Elapsed">Wall time of the whole call.</param>
public sealed record ExpertSurgeryResult(
    string OutputDirectory,
    int InputExperts,
    int OutputExperts,
    long InputTensorBytes,
    long OutputTensorBytes,
    int TensorsWritten,
    TimeSpan Elapsed)
{
    /// <summary>Output bytes as a fraction of input bytes.</summary>
    public double SizeRatio => InputTensorBytes == 0 ? 1.0 : (double)OutputTensorBytes / InputTensorBytes;

    /// <summary>The result as a JSON object (snake_case keys).</summary>
    public JsonObject ToJson() => new()
    {
        ["output_directory"] = OutputDirectory,
        ["input_experts"] = InputExperts,
        ["output_experts"] = OutputExperts,
        ["input_tensor_bytes"] = InputTensorBytes,
        ["output_tensor_bytes"] = OutputTensorBytes,
        ["size_ratio"] = Math.Round(SizeRatio, 6),
        ["tensors_written"] = TensorsWritten,
        ["elapsed_seconds"] = Math.Round(Elapsed.TotalSeconds, 3),
    };

    /// <summary>A short Markdown summary.</summary>
    public string ToMarkdown()
    {
        var c = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.Append(c, $"Wrote `{OutputDirectory}`: {InputExperts} → {OutputExperts} routed experts per MoE layer, ");
        sb.Append(c, $"{TensorsWritten} tensors, {OutputTensorBytes:N0} of {InputTensorBytes:N0} bytes ({SizeRatio:P1}) ");
        sb.Append(c, $"in {Elapsed.TotalSeconds:F1} s.");
        sb.AppendLine();
        return sb.ToString();
    }
}
