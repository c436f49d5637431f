namespace MoECompress.Compression.Calibration;

/// <summary>What a <see cref="CalibrationCollector"/> gathers besides the router and expert statistics it always keeps.</summary>
public sealed record CalibrationCollectorOptions
{
    /// <summary>
    /// Also run every routed expert on every token (not only the tokens routed to it) to record its mean output over all
    /// tokens, as HC-SMoE clusters on. Costs E/k times the expert compute of the run. Default off.
    /// </summary>
    public bool MeanOutputOverAllTokens { get; init; }

    /// <summary>Keep every token's raw router logits [N, E] per MoE layer (<see cref="RouterLogitDump"/>). Default off.</summary>
    public bool KeepRouterLogits { get; init; }

    /// <summary>
    /// Experts with fewer routed tokens than this are reported cold; null uses
    /// <see cref="CoverageReport.DefaultThreshold"/> = max(16, 0.1 · N·k/E).
    /// </summary>
    public double? ColdThreshold { get; init; }

    /// <summary>Throws <see cref="Formats.Errors.MoeCompressException"/>(Usage) for a negative or non-finite threshold.</summary>
    public void Validate()
    {
        if (ColdThreshold is { } c && (c < 0 || !double.IsFinite(c)))
            throw new Formats.Errors.MoeCompressException(Formats.Errors.ErrorKind.Usage,
                $"cold-expert threshold {c} must be a non-negative number of tokens");
    }
}
