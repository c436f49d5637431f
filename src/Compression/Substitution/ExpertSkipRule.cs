namespace MoECompress.Compression.Substitution;

/// <summary>
/// Dynamic expert skipping of one MoE layer (MC-MoE's online dynamic pruning): the second-ranked computed expert of
/// a token is not run when w₂/w₁ &lt; <see cref="Mu"/>, unless the token is protected — its MoE-block input has an L2
/// norm of at least <see cref="NormThreshold"/> (the calibration tokens' top quantile). Counts what it does.
/// </summary>
public sealed class ExpertSkipRule
{
    public ExpertSkipRule(int layer, double mu, double normThreshold)
    {
        if (!(mu >= 0) || double.IsInfinity(mu)) throw new ArgumentOutOfRangeException(nameof(mu), mu, "μ must be finite and ≥ 0");
        if (double.IsNaN(normThreshold)) throw new ArgumentOutOfRangeException(nameof(normThreshold), normThreshold, "must be a number");
        Layer = layer;
        Mu = mu;
        NormThreshold = normThreshold;
    }

    public int Layer { get; }
    /// <summary>Skip the second expert when w₂/w₁ is below this (0 never skips).</summary>
    public double Mu { get; }
    /// <summary>Tokens whose block input norm is at least this are never skipped (+∞ protects none).</summary>
    public double NormThreshold { get; }

    /// <summary>Routed expert calls of the tokens seen (tokens × top-k).</summary>
    public long ExpertCalls { get; private set; }
    /// <summary>Expert calls this rule skipped.</summary>
    public long SkippedCalls { get; private set; }
    /// <summary>Tokens seen.</summary>
    public long Tokens { get; private set; }
    /// <summary>Tokens protected by their norm.</summary>
    public long ProtectedTokens { get; private set; }

    /// <summary>Fraction of expert calls skipped (0 when nothing ran).</summary>
    public double SkippedFraction => ExpertCalls == 0 ? 0 : (double)SkippedCalls / ExpertCalls;

    internal void Count(long tokens, long calls, long skipped, long protectedTokens)
    {
        Tokens += tokens;
        ExpertCalls += calls;
        SkippedCalls += skipped;
        ProtectedTokens += protectedTokens;
    }
}

/// <summary>What a layer's skip rule did during a run (a snapshot of its counters).</summary>
public sealed record ExpertSkipLayerReport(int Layer, double Mu, double NormThreshold, long Tokens, long ExpertCalls, long SkippedCalls, long ProtectedTokens)
{
    /// <summary>Fraction of expert calls saved.</summary>
    public double SkippedFraction => ExpertCalls == 0 ? 0 : (double)SkippedCalls / ExpertCalls;

    public static ExpertSkipLayerReport Of(ExpertSkipRule rule) =>
        new(rule.Layer, rule.Mu, rule.NormThreshold, rule.Tokens, rule.ExpertCalls, rule.SkippedCalls, rule.ProtectedTokens);
}
