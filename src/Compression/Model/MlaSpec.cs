namespace MoECompress.Compression.Model;

/// <summary>
/// DeepSeek multi-head latent attention dimensions (config.json q_lora_rank, kv_lora_rank, qk_nope_head_dim,
/// qk_rope_head_dim, v_head_dim). <see cref="QLoraRank"/> null means a plain q_proj instead of q_a_proj → q_b_proj.
/// </summary>
public sealed record MlaSpec(int? QLoraRank, int KvLoraRank, int QkNopeHeadDim, int QkRopeHeadDim, int VHeadDim)
{
    /// <summary>Query/key head dimension: nope + rope parts.</summary>
    public int QkHeadDim => QkNopeHeadDim + QkRopeHeadDim;
}
