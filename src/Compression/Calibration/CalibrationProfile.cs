namespace MoECompress.Compression.Calibration;

/// <summary>
/// The result of a calibration run: per MoE layer and routed expert, the router and expert statistics of
/// <see cref="MoELayerStatistics"/> (vectors and E×E / E×H matrices — never H² or I² Hessians, so a profile is KB–MB
/// per layer whatever the expert width), the super experts they imply and the coverage report naming cold experts,
/// with the model and data they came from.
/// </summary>
/// <remarks>
/// On disk (<see cref="Save"/>) a profile is a folder written atomically (temporary folder + rename) by the project's
/// <c>CheckpointWriter</c>: <c>profile.safetensors</c> (tensors named by <see cref="ProfileTensorNames"/>),
/// <c>profile.json</c> (provenance, options, a per-layer per-expert table of the scalar statistics, super experts,
/// coverage) and <c>moe-compress-manifest.json</c> (sizes and SHA-256 of both); with a router-logit dump also
/// <c>router-logits/router_logits.safetensors</c>. <see cref="Load"/> reads the tensors as the source of truth and
/// re-derives super experts and coverage from them; the E×H mean outputs of each layer are read only when first used.
/// Version-1 profiles (which also stored Hessians) load too; their Hessian tensors are ignored.
/// </remarks>
public sealed class CalibrationProfile
{
    /// <summary>Tensor file name inside a profile folder.</summary>
    public const string TensorFileName = "profile.safetensors";
    /// <summary>JSON summary file name inside a profile folder.</summary>
    public const string SummaryFileName = "profile.json";
    /// <summary>Sub-folder holding the router-logit dump.</summary>
    public const string RouterLogitsFolder = "router-logits";
    /// <summary>File name of the router-logit dump inside <see cref="RouterLogitsFolder"/>.</summary>
    public const string RouterLogitsFileName = "router_logits.safetensors";
    /// <summary>Value of "format" in profile.json.</summary>
    public const string FormatName = "moe-compress-calibration-profile";
    /// <summary>Version of the on-disk layout.</summary>
    public const int FormatVersion = 2;

    private readonly Dictionary<int, MoELayerStatistics> _byLayer;

    internal CalibrationProfile(CalibrationModelInfo model, CalibrationDataInfo? data, CalibrationCollectorOptions options,
        IReadOnlyList<MoELayerStatistics> layers, SuperExpertReport superExperts, CoverageReport coverage, string toolVersion,
        DateTimeOffset createdUtc)
    {
        Model = model;
        Data = data;
        Options = options;
        Layers = layers;
        SuperExperts = superExperts;
        Coverage = coverage;
        ToolVersion = toolVersion;
        CreatedUtc = createdUtc;
        _byLayer = layers.ToDictionary(l => l.Layer);
    }

    /// <summary>The model the statistics were gathered on.</summary>
    public CalibrationModelInfo Model { get; }
    /// <summary>Where the calibration tokens came from, or null.</summary>
    public CalibrationDataInfo? Data { get; }
    /// <summary>What was collected.</summary>
    public CalibrationCollectorOptions Options { get; }
    /// <summary>N: calibration tokens (those that went through the first MoE layer).</summary>
    public long Tokens => Layers.Count == 0 ? 0 : Layers[0].Tokens;
    /// <summary>Statistics of every MoE layer, in layer order.</summary>
    public IReadOnlyList<MoELayerStatistics> Layers { get; }
    /// <summary>Super experts and the thresholds that found them.</summary>
    public SuperExpertReport SuperExperts { get; }
    /// <summary>Cold experts and the threshold used.</summary>
    public CoverageReport Coverage { get; }
    /// <summary>moe-compress version that produced the profile.</summary>
    public string ToolVersion { get; }
    /// <summary>When the profile was produced.</summary>
    public DateTimeOffset CreatedUtc { get; }
    /// <summary>Router logits to write with the profile (not read back by <see cref="Load"/>; see <see cref="LoadRouterLogits"/>).</summary>
    public RouterLogitDump? RouterLogits { get; set; }

    /// <summary>The statistics of decoder layer <paramref name="layer"/>.</summary>
    /// <exception cref="KeyNotFoundException">The layer has no MoE block in this profile.</exception>
    public MoELayerStatistics Layer(int layer) => _byLayer.TryGetValue(layer, out var s) ? s
        : throw new KeyNotFoundException($"layer {layer} has no MoE statistics in this profile (MoE layers: {string.Join(", ", _byLayer.Keys)})");

    /// <summary>True when the profile has statistics for decoder layer <paramref name="layer"/>.</summary>
    public bool HasLayer(int layer) => _byLayer.ContainsKey(layer);

    /// <summary>Assembles a profile: derives the super experts and the coverage report from the layers.</summary>
    public static CalibrationProfile Create(CalibrationModelInfo model, CalibrationDataInfo? data, CalibrationCollectorOptions options,
        IReadOnlyList<MoELayerStatistics> layers, string? toolVersion = null, DateTimeOffset? createdUtc = null)
    {
        var ordered = layers.OrderBy(l => l.Layer).ToList();
        if (ordered.Select(l => l.Layer).Distinct().Count() != ordered.Count)
            throw new ArgumentException("a layer appears twice", nameof(layers));
        var supers = SuperExpertReport.Find(ordered.ToDictionary(l => l.Layer, l => (IReadOnlyList<double>)l.MaxAbsOutput), model.NumLayers);

        var tokens = ordered.Count == 0 ? 0 : ordered[0].Tokens;
        var topK = ordered.Count == 0 ? model.TopK : ordered[0].TopK;
        var experts = ordered.Count == 0 ? model.NumExperts : ordered[0].NumExperts;
        var threshold = options.ColdThreshold ?? CoverageReport.DefaultThreshold(tokens, topK, experts);
        var cold = new List<ColdExpert>();
        var unused = 0;
        foreach (var l in ordered)
            for (var e = 0; e < l.NumExperts; e++)
            {
                if (l.RoutedTokens[e] < threshold) cold.Add(new ColdExpert(l.Layer, e, l.RoutedTokens[e]));
                if (l.RoutedTokens[e] == 0) unused++;
            }

        return new CalibrationProfile(model, data, options, ordered, supers, new CoverageReport(threshold, cold, unused),
            toolVersion ?? CurrentToolVersion, createdUtc ?? DateTimeOffset.UtcNow);
    }

    /// <summary>
    /// Checks that this profile was gathered on a model shaped like <paramref name="moe"/> (same MoE layers, expert count,
    /// top-k, hidden and expert intermediate sizes): a profile of another model (or of the model before pruning) must not
    /// drive decisions. Throws <see cref="Formats.Errors.MoeCompressException"/>(Usage) naming the first difference.
    /// </summary>
    /// <param name="moe">The model's MoE facts.</param>
    /// <param name="profilePath">Shown in the error message.</param>
    public void EnsureMatches(Formats.Families.MoEConfig moe, string profilePath = "calibration profile")
    {
        string? problem = null;
        var moeLayers = moe.MoELayerIndices().ToArray();
        if (!moeLayers.SequenceEqual(Layers.Select(l => l.Layer)))
            problem = $"MoE layers [{string.Join(", ", Layers.Select(l => l.Layer))}] differ from the model's [{string.Join(", ", moeLayers)}]";
        else if (Layers.FirstOrDefault(l => l.NumExperts != moe.NumExperts) is { } e)
            problem = $"layer {e.Layer} has {e.NumExperts} experts, the model {moe.NumExperts}";
        else if (Layers.FirstOrDefault(l => l.TopK != moe.TopK) is { } k)
            problem = $"layer {k.Layer} routes top-{k.TopK}, the model top-{moe.TopK}";
        else if (Layers.FirstOrDefault(l => l.HiddenSize != moe.HiddenSize || l.IntermediateSize != moe.ExpertIntermediateSize) is { } h)
            problem = $"layer {h.Layer} has hidden/intermediate sizes {h.HiddenSize}/{h.IntermediateSize}, the model {moe.HiddenSize}/{moe.ExpertIntermediateSize}";
        if (problem is not null)
            throw new Formats.Errors.MoeCompressException(Formats.Errors.ErrorKind.Usage,
                $"{profilePath}: was not gathered on this model ({problem}); calibrate this model first");
    }

    /// <summary>Version of this library.</summary>
    public static string CurrentToolVersion =>
        typeof(CalibrationProfile).Assembly.GetName().Version?.ToString(3) ?? "0.0.0";

    /// <summary>
    /// Writes the profile folder <paramref name="directory"/> atomically: everything is written to a temporary folder
    /// beside it and renamed into place only when complete, so a failure leaves no partial output.
    /// </summary>
    /// <param name="directory">Folder to create.</param>
    /// <param name="overwrite">Replace an existing folder (otherwise an existing one is an Io error).</param>
    /// <param name="cancellationToken">Cancels before the rename.</param>
    /// <returns>Full path of the folder.</returns>
    public string Save(string directory, bool overwrite = false, CancellationToken cancellationToken = default) =>
        CalibrationProfileFile.Save(this, directory, overwrite, cancellationToken);

    /// <summary>
    /// Reads a profile from its folder, its profile.json or its profile.safetensors. Both files must be present and agree:
    /// a tensor that profile.json implies but profile.safetensors lacks (or with another dtype or shape) is a
    /// <see cref="Formats.Errors.CheckpointFormatException"/> naming the file and the tensor.
    /// </summary>
    public static CalibrationProfile Load(string path) => CalibrationProfileFile.Load(path);

    /// <summary>Reads the router-logit dump saved with a profile (folder or profile file path).</summary>
    public static RouterLogitDump LoadRouterLogits(string path) => CalibrationProfileFile.LoadRouterLogits(path);

    /// <inheritdoc />
    public override string ToString() =>
        $"calibration profile of {Model.Family} ({Layers.Count} MoE layers, {Tokens:N0} tokens, {SuperExperts.Experts.Count} super experts, " +
        $"{Coverage.ColdExperts.Count} cold experts)";
}
