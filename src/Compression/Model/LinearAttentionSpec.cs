namespace MoECompress.Compression.Model;

/// <summary>
/// Gated DeltaNet (linear attention) dimensions of Qwen3-Next / Qwen3.5 (config.json linear_num_key_heads,
/// linear_num_value_heads, linear_key_head_dim, linear_value_head_dim, linear_conv_kernel_dim). Value heads are a
/// multiple of key heads: key head j serves value heads j·r … j·r+r−1.
/// </summary>
public sealed record LinearAttentionSpec(int NumKeyHeads, int NumValueHeads, int KeyHeadDim, int ValueHeadDim, int ConvKernel)
{
    /// <summary>Width of all query (or key) heads: key heads · key head dim.</summary>
    public int KeyDim => NumKeyHeads * KeyHeadDim;
    /// <summary>Width of all value heads.</summary>
    public int ValueDim => NumValueHeads * ValueHeadDim;
    /// <summary>Channels of the causal convolution: q, k and v side by side.</summary>
    public int ConvDim => 2 * KeyDim + ValueDim;
    /// <summary>Value heads per key head.</summary>
    public int HeadRatio => NumValueHeads / NumKeyHeads;
}
