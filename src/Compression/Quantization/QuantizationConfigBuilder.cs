using System.Text.Json.Nodes;
using MoECompress.Formats.Quantized;

namespace MoECompress.Compression.Quantization;

/// <summary>The <c>quantization_config</c> of config.json for a quantized output checkpoint.</summary>
public static class QuantizationConfigBuilder
{
    /// <summary>
    /// Builds the config for <paramref name="format"/>: GPTQ (<see cref="GptqQuantizationConfig.Build"/>: the most common
    /// scheme as base, the others as <c>dynamic</c> "+:" rules, unquantized Linear modules as one "-:" rule) or
    /// compressed-tensors (<see cref="CompressedTensorsQuantizationConfig.Build"/>: one config group per scheme,
    /// unquantized modules in <c>ignore</c>); null for <see cref="QuantizedFormat.Dequantized"/> (a plain checkpoint).
    /// </summary>
    /// <param name="format">Output format.</param>
    /// <param name="quantized">Every quantized module (prefix without ".weight") and its scheme.</param>
    /// <param name="unquantizedLinearModules">Every Linear module left in full precision (routers, lm_head, shared
    /// experts, attention ...): loaders would otherwise expect them packed.</param>
    /// <param name="actOrder">Whether GPTQ ran with act-order (desc_act / actorder "group").</param>
    /// <exception cref="ArgumentException">No quantized module, or a module listed both ways.</exception>
    /// <exception cref="Formats.Errors.MoeCompressException">Usage: a scheme the format cannot store (1-bit).</exception>
    public static JsonObject? Build(QuantizedFormat format, IReadOnlyDictionary<string, QuantizationScheme> quantized,
        IEnumerable<string> unquantizedLinearModules, bool actOrder)
    {
        ArgumentNullException.ThrowIfNull(quantized);
        ArgumentNullException.ThrowIfNull(unquantizedLinearModules);
        if (format == QuantizedFormat.Dequantized) return null;
        var packed = quantized.ToDictionary(kv => kv.Key, kv => QuantizedModuleWriter.ToPacked(kv.Value), StringComparer.Ordinal);
        return format switch
        {
            QuantizedFormat.Gptq => GptqQuantizationConfig.Build(packed, unquantizedLinearModules, actOrder,
                $"moe-compress:{typeof(QuantizationConfigBuilder).Assembly.GetName().Version?.ToString(3) ?? "0.0.0"}"),
            QuantizedFormat.CompressedTensors => CompressedTensorsQuantizationConfig.Build(packed, unquantizedLinearModules, actOrder),
            _ => throw new ArgumentOutOfRangeException(nameof(format), format, "unknown quantized format"),
        };
    }
}
