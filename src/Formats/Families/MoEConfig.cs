namespace MoECompress.Formats.Families;

/// <summary>How router scores are turned into probabilities.</summary>
public enum RouterScoring { Softmax, Sigmoid }

/// <summary>
/// The MoE-relevant facts of a model, read from config.json by its family adapter. Everything that prunes, merges,
/// quantizes, inspects or runs a model reads expert counts and routing from here, never from config keys directly.
/// </summary>
public sealed record MoEConfig
{
    public required string Family { get; init; }
    public required string Architecture { get; init; }
    public required int NumLayers { get; init; }
    public required int HiddenSize { get; init; }
    public required int VocabSize { get; init; }
    /// <summary>Routed experts per MoE layer.</summary>
    public required int NumExperts { get; init; }
    public required int TopK { get; init; }
    /// <summary>Intermediate size of one routed expert.</summary>
    public required int ExpertIntermediateSize { get; init; }
    /// <summary>Intermediate size of dense MLP layers (0 when the model has none).</summary>
    public int DenseIntermediateSize { get; init; }
    /// <summary>True for each decoder layer that has a routed MoE block (length <see cref="NumLayers"/>).</summary>
    public required IReadOnlyList<bool> IsMoELayer { get; init; }
    public int NumSharedExperts { get; init; }
    /// <summary>Intermediate size of the shared expert block (total, as stored).</summary>
    public int SharedExpertIntermediateSize { get; init; }
    public bool HasSharedExpertGate { get; init; }
    /// <summary>DeepSeek group-limited routing: number of groups (1 = none).</summary>
    public int NumGroups { get; init; } = 1;
    public int TopKGroups { get; init; } = 1;
    public RouterScoring Scoring { get; init; } = RouterScoring.Softmax;
    public bool NormTopKProb { get; init; }
    public double RoutedScalingFactor { get; init; } = 1.0;
    public bool HasRouterBias { get; init; }
    public bool HasCorrectionBias { get; init; }
    /// <summary>Number of MTP (multi-token prediction) layers stored after the decoder layers.</summary>
    public int NumMtpLayers { get; init; }
    public bool TieWordEmbeddings { get; init; }
    /// <summary>Every config.json key (dotted path for nested configs, e.g. "text_config.num_experts") that holds the routed expert count.</summary>
    public required IReadOnlyList<string> ExpertCountKeys { get; init; }
    public required string TopKKey { get; init; }
    /// <summary>True when routed experts are stored as 3-D tensors holding every expert.</summary>
    public bool FusedExperts { get; init; }

    public int NumMoELayers => IsMoELayer.Count(x => x);
}
