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
    /// <summary>True when the MTP layers hold a routed MoE block like the decoder's MoE layers (DeepSeek-V3, Qwen3.5).</summary>
    public bool MtpLayersAreMoE { get; init; }
    public bool TieWordEmbeddings { get; init; }
    /// <summary>Every config.json key (dotted path for nested configs, e.g. "text_config.num_experts") that holds the routed expert count.</summary>
    public required IReadOnlyList<string> ExpertCountKeys { get; init; }
    public required string TopKKey { get; init; }

    private readonly IReadOnlyList<string>? _topKKeys;

    /// <summary>
    /// Every config.json key (dotted path) that holds top-k: <see cref="TopKKey"/> first, then aliases that must be kept in
    /// step (GPT-OSS also stores <c>experts_per_token</c>). Defaults to just <see cref="TopKKey"/>.
    /// </summary>
    public IReadOnlyList<string> TopKKeys
    {
        get => _topKKeys ?? [TopKKey];
        init => _topKKeys = value;
    }

    /// <summary>True when routed experts are stored as 3-D tensors holding every expert.</summary>
    public bool FusedExperts { get; init; }

    /// <summary>True when the fused expert weights are stored as MXFP4 <c>*_blocks</c>/<c>*_scales</c> (GPT-OSS releases).</summary>
    public bool Mxfp4Experts { get; init; }

    /// <summary>
    /// Prefix of the language model's module tree in tensor names: "model." for most checkpoints,
    /// "model.language_model." for multimodal Qwen3.5/3.6 checkpoints.
    /// </summary>
    public string ModelPrefix { get; init; } = "model.";

    /// <summary>
    /// "" when the language model's keys sit at the top of config.json, "text_config." when they are nested (multimodal
    /// Qwen3.5/3.6). Prefix of every key path this record reports.
    /// </summary>
    public string ConfigSectionPrefix { get; init; } = "";

    /// <summary>The key (without <see cref="ConfigSectionPrefix"/>) holding <see cref="ExpertIntermediateSize"/>.</summary>
    public string ExpertIntermediateKey { get; init; } = "intermediate_size";

    public int NumMoELayers => IsMoELayer.Count(x => x);

    /// <summary>Decoder layers plus MTP layers: the layer numbers tensor roles use run from 0 to this − 1.</summary>
    public int NumLayersWithMtp => NumLayers + NumMtpLayers;

    /// <summary>True when <paramref name="layer"/> is an MTP layer (numbered after the decoder layers).</summary>
    public bool IsMtpLayer(int layer) => layer >= NumLayers && layer < NumLayers + NumMtpLayers;

    /// <summary>Whether the decoder or MTP layer <paramref name="layer"/> has a routed MoE block.</summary>
    public bool HasRoutedExperts(int layer) =>
        layer >= 0 && (layer < NumLayers ? IsMoELayer[layer] : IsMtpLayer(layer) && MtpLayersAreMoE);

    /// <summary>The layers with a routed MoE block, decoder layers first, then (optionally) MTP layers.</summary>
    public IEnumerable<int> MoELayerIndices(bool includeMtp = false)
    {
        int end = includeMtp ? NumLayersWithMtp : NumLayers;
        for (int l = 0; l < end; l++)
            if (HasRoutedExperts(l)) yield return l;
    }
}
