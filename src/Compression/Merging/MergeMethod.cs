namespace MoECompress.Compression.Merging;

/// <summary>How the experts of one cluster are merged into one expert.</summary>
public enum MergeMethod
{
    /// <summary>HC-SMoE: the frequency-weighted average Σ f_i W_i / Σ f_i of every projection.</summary>
    Average,
    /// <summary>
    /// Sub-MoE: one SVD of the concatenated member weights [W_1|…|W_n] = U Σ [V_1ᵀ|…|V_nᵀ] per projection, the right
    /// factors averaged by frequency and the expert rebuilt as U Σ V̄ᵀ, truncated to a rank or an energy fraction
    /// (without truncation this equals <see cref="Average"/>).
    /// </summary>
    Subspace,
}
