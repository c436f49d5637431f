namespace MoECompress.Compression.Model;

/// <summary>
/// What-if settings for one MoE block forward: simulate pruning (experts never chosen), substitute experts
/// (e.g. a quantized or merged copy), or leave out the shared experts.
/// </summary>
public sealed record MoEForwardOptions
{
    /// <summary>Experts flagged false are never routed to (see <see cref="MoERouter.Route"/>); null keeps all.</summary>
    public IReadOnlyList<bool>? KeptExperts { get; init; }
    /// <summary>Expert index → MLP used instead of the block's own expert. Owned by the caller.</summary>
    public IReadOnlyDictionary<int, GatedMlp>? ExpertReplacements { get; init; }
    /// <summary>Add the shared experts' contribution (default true).</summary>
    public bool IncludeSharedExperts { get; init; } = true;
}
