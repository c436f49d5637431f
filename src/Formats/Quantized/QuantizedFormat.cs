namespace MoECompress.Formats.Quantized;

/// <summary>How quantized weights are stored in an output checkpoint.</summary>
public enum QuantizedFormat
{
    /// <summary>
    /// GPTQ v1 layout (AutoGPTQ / GPTQModel <c>checkpoint_format: "gptq"</c>): <c>qweight</c>, <c>qzeros</c>, <c>scales</c>,
    /// <c>g_idx</c> per Linear module, with <c>quant_method: "gptq"</c> and per-module overrides in <c>dynamic</c>.
    /// </summary>
    Gptq,

    /// <summary>
    /// compressed-tensors <c>pack-quantized</c> (llm-compressor, vLLM): <c>weight_packed</c>, <c>weight_scale</c>,
    /// <c>weight_zero_point</c> (asymmetric only), <c>weight_shape</c> per Linear module.
    /// </summary>
    CompressedTensors,

    /// <summary>Ŵ written back in the original dtype under the original name; no quantization_config.</summary>
    Dequantized,
}
