using MoECompress.Formats.Families;
using MoECompress.Formats.Gguf;

namespace MoECompress.Compression.Gguf;

/// <summary>What a GGUF tensor is made from.</summary>
public enum GgufTensorSourceKind
{
    /// <summary>One Hugging Face tensor (llama q/k rows permuted).</summary>
    Tensor,
    /// <summary>Every routed expert's projection of one layer, stacked: ne = [in, out, E].</summary>
    StackedExperts,
    /// <summary>The attn_k_b half of DeepSeek's kv_b_proj, transposed per head: ne = [nope, kv_lora_rank, heads].</summary>
    KvBKeys,
    /// <summary>The attn_v_b half of DeepSeek's kv_b_proj: ne = [kv_lora_rank, v_head_dim, heads].</summary>
    KvBValues,
}

/// <summary>
/// One tensor of the GGUF output: its name and ggml dimensions, where it comes from, the type asked for (defaults,
/// overrides, allocation) and the type written (after the llama-quantize fallback for rows that are not whole blocks).
/// </summary>
public sealed record GgufTensorEntry(string Name, long[] Dimensions, GgufTensorSourceKind Kind, string? HfName, int Layer, ExpertProjection? Projection)
{
    /// <summary>The type the defaults, overrides or the allocation asked for.</summary>
    public GgmlType Requested { get; set; } = GgmlType.F32;
    /// <summary>The type written: <see cref="Requested"/> or its fallback.</summary>
    public GgmlType Type => Requested.FallbackFor(Dimensions[0]);
    /// <summary>True when the written type is a fallback.</summary>
    public bool FellBack => Type != Requested;
    /// <summary>Bytes of the tensor data.</summary>
    public long Bytes => Dimensions.Skip(1).Aggregate(1L, (a, b) => a * b) * Type.RowBytes(Dimensions[0]);
    /// <summary>Parameters.</summary>
    public long Elements => Dimensions.Aggregate(1L, (a, b) => a * b);
    /// <summary>Routers, the correction bias and 1-D tensors are never quantized.</summary>
    public bool AlwaysF32 { get; init; }
}
