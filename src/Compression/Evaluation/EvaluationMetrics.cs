namespace MoECompress.Compression.Evaluation;

/// <summary>
/// The numbers of one evaluation: sliding-window perplexity of the model and, when a base model was given, the base
/// perplexity, mean KL(base ‖ model), top-1 agreement and per-layer hidden-state error. Every per-token figure is a
/// mean over the same scored tokens (see <see cref="SlidingWindowPlan"/>). NLL and KL are in nats.
/// </summary>
public sealed record EvaluationMetrics
{
    /// <summary>Tokens per window.</summary>
    public required int Context { get; init; }
    /// <summary>Tokens between window starts.</summary>
    public required int Stride { get; init; }
    /// <summary>Number of windows run.</summary>
    public required int Windows { get; init; }
    /// <summary>Tokens in the evaluated stream.</summary>
    public required int StreamTokens { get; init; }
    /// <summary>Tokens scored (each once).</summary>
    public required long TokensScored { get; init; }

    /// <summary>Mean negative log-likelihood of the scored tokens under the model (nats/token).</summary>
    public required double MeanNll { get; init; }
    /// <summary>exp(<see cref="MeanNll"/>).</summary>
    public double Perplexity => Math.Exp(MeanNll);

    /// <summary>Mean NLL of the same tokens under the base model (null without a base).</summary>
    public double? BaseMeanNll { get; init; }
    /// <summary>exp(<see cref="BaseMeanNll"/>).</summary>
    public double? BasePerplexity => BaseMeanNll is { } b ? Math.Exp(b) : null;

    /// <summary>Mean over scored positions of KL(p_base ‖ p_model) = Σ_v p_base(v) (log p_base(v) − log p_model(v)), nats.</summary>
    public double? MeanKl { get; init; }
    /// <summary>Largest per-position KL(p_base ‖ p_model) seen.</summary>
    public double? MaxKl { get; init; }
    /// <summary>Fraction of scored positions where the two models' most likely next token (argmax) is the same.</summary>
    public double? Top1Agreement { get; init; }

    /// <summary>Per decoder layer hidden-state error against the base (empty without a base, or when the layer counts differ).</summary>
    public IReadOnlyList<LayerError> LayerErrors { get; init; } = Array.Empty<LayerError>();

    /// <summary>Remarks about the run (e.g. why layer errors are missing).</summary>
    public IReadOnlyList<string> Notes { get; init; } = Array.Empty<string>();
}
