using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Families;
using MoECompress.Formats.Safetensors;

namespace MoECompress.Compression.Surgery;

/// <summary>
/// Writes a checkpoint whose routed experts are pruned or merged as an <see cref="ExpertSurgeryPlan"/> says, keeping the
/// MoE invariants: every routed layer (MTP layers included) gets the same E' experts, renumbered 0..E'−1; router weight,
/// router bias and e_score_correction_bias are sliced (or combined) with the same index list as the experts; every
/// expert-count key of config.json becomes E' and nothing else changes; shared experts, attention, norms, embeddings
/// and dense layers are copied byte for byte. The output is a standard safetensors checkpoint (index.json when sharded,
/// tokenizer and other files copied) plus a manifest with the old → new expert map.
/// </summary>
/// <remarks>
/// <para>Every tensor name comes from the family adapter (<see cref="IMoEFamily.Classify"/>,
/// <see cref="IMoEFamily.RouterWeightName"/>, <see cref="IMoEFamily.ExpertTensor"/>). Kept experts are copied byte for
/// byte, FP8 <c>weight_scale_inv</c> companions and expert biases included; fused tensors ([E, ...] Qwen3 v5, GraniteMoE,
/// GPT-OSS incl. MXFP4 blocks/scales and biases) are rebuilt from slabs along dimension 0. Merged experts are written
/// from <see cref="IMergedExpertWeights"/> in the input's dtype and the layout's orientation (row ranges, gate/up
/// interleaving, transposition); quantized (FP8, MXFP4) inputs cannot take merged experts.</para>
/// <para>The plan is validated before anything is created; the output appears atomically (temporary folder + rename);
/// the input is only read. One tensor is transformed at a time, in ascending layer order (what
/// <see cref="IMergedExpertWeights"/> relies on); untouched tensors are copied in the kernel.</para>
/// </remarks>
public static class ExpertSurgery
{
    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    /// <summary>Applies <paramref name="plan"/> to <paramref name="input"/> and writes the result to <paramref name="outputDir"/>.</summary>
    /// <param name="input">The opened input checkpoint (left open and unchanged).</param>
    /// <param name="plan">The output experts of every routed layer.</param>
    /// <param name="outputDir">Checkpoint directory to create.</param>
    /// <param name="options">Overwrite, sharding and manifest extras; null for defaults.</param>
    /// <param name="progress">One line per routed layer and at the end.</param>
    /// <param name="cancellationToken">Stops the work; nothing is left at <paramref name="outputDir"/>.</param>
    /// <exception cref="MoeCompressException"><see cref="ErrorKind.Usage"/> for a malformed plan or output path,
    /// <see cref="ErrorKind.Infeasible"/> for plans the model cannot load (top-k &gt; E', DeepSeek groups, different
    /// counts per layer, merged experts of quantized weights), <see cref="ErrorKind.Io"/> when the output exists or
    /// cannot be written.</exception>
    public static ExpertSurgeryResult Write(ModelCheckpoint input, ExpertSurgeryPlan plan, string outputDir,
        ExpertSurgeryOptions? options = null, IProgress<string>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(plan);
        ArgumentException.ThrowIfNullOrWhiteSpace(outputDir);
        options ??= new ExpertSurgeryOptions();
        var clock = Stopwatch.StartNew();

        if (input.Config.ContainsKey(CompressedExpertsConfig.Key))
            throw new MoeCompressException(ErrorKind.Infeasible,
                $"{input.ConfigPath}: the model has compressed experts ('{CompressedExpertsConfig.Key}'); prune or merge before `substitute`, not after");
        var layout = RoutedTensorLayout.Build(input);
        ExpertSurgeryPlanValidator.Validate(layout, plan);
        string destination = CheckDestination(input, outputDir);
        var (manifestOptions, manifestExtras) = SplitManifestProperties(options.ManifestProperties);
        cancellationToken.ThrowIfCancellationRequested();

        var cfg = input.MoE;
        int outputExperts = plan.OutputExperts;
        var outConfig = cfg with { NumExperts = outputExperts };
        var tensors = PlanTensors(layout, plan, outConfig);
        long inputBytes = input.Tensors.Names.Sum(n => input.Tensors.GetInfo(n).ByteLength);

        var writerOptions = new CheckpointWriterOptions
        {
            MaxShardBytes = options.MaxShardBytes,
            Overwrite = options.Overwrite,
            FlushToDisk = options.FlushToDisk,
            ManifestOptions = manifestOptions,
            Metadata = input.Tensors is SafetensorsCheckpoint { ShardFiles: [{ HasMetadata: true } first, ..] }
                ? new Dictionary<string, string>(first.Metadata, StringComparer.Ordinal) : null,
        };
        if (options.MaxShardBytes <= 0)
            throw new MoeCompressException(ErrorKind.Usage, $"MaxShardBytes = {options.MaxShardBytes}: must be positive");

        using var writer = CheckpointWriter.Create(destination, tensors.Select(t => t.Spec).ToList(), writerOptions);
        writer.SetManifestProperty("operation", plan.Operation);
        writer.SetManifestProperty("expert_map", ExpertMapManifest.Build(plan, cfg.NumExperts));
        foreach (var (name, value) in manifestExtras)
        {
            try { writer.SetManifestProperty(name, value); }
            catch (ArgumentException)
            {
                throw new MoeCompressException(ErrorKind.Usage, $"manifest property '{name}' is a standard manifest field and cannot be set");
            }
        }
        progress?.Report($"{plan.Operation}: {cfg.NumExperts} → {outputExperts} experts in {layout.Layers.Count} routed layer(s), " +
                         $"{tensors.Count} tensors → {destination}");

        var rewriter = new RoutedTensorWriter(layout, plan, outConfig, writer);
        int currentLayer = -1;
        foreach (var t in tensors)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (t.Kind != SurgeryTensorKind.Copy && t.Layer != currentLayer)
            {
                currentLayer = t.Layer;
                var list = plan.Layers[currentLayer];
                int merged = list.Count(o => o.Merged), weighted = list.Count(o => o.RouterRow == RouterRowRule.Weighted);
                progress?.Report($"layer {currentLayer}{(cfg.IsMtpLayer(currentLayer) ? " (MTP)" : "")}: {cfg.NumExperts} → {list.Count} experts" +
                                 (merged > 0 ? $", {merged} merged" : "") + (weighted > 0 ? $", {weighted} weighted router rows" : ""));
            }
            rewriter.Write(t, cancellationToken);
        }

        var config = (JsonObject)input.Config.DeepClone();
        foreach (var key in cfg.ExpertCountKeys) ConfigKeys.Set(config, key, outputExperts);
        writer.WriteTextFile(ModelCheckpoint.ConfigFileName, config.ToJsonString(Indented) + "\n");
        if (input.Tensors is SafetensorsCheckpoint source)
            writer.CopyAuxiliaryFiles(source.Directory, [ModelCheckpoint.ConfigFileName], cancellationToken);
        writer.Commit(cancellationToken);
        progress?.Report($"wrote {writer.Destination}: {writer.TensorCount} tensors, {writer.TotalTensorBytes:N0} bytes");
        return new ExpertSurgeryResult(writer.Destination, cfg.NumExperts, outputExperts, inputBytes, writer.TotalTensorBytes,
            writer.TensorCount, clock.Elapsed);
    }

    /// <summary>
    /// The output tensors in write order: the input's order with each layer's per-expert tensors replaced by the output
    /// experts' (in new order), grouped by layer so routed layers are produced in ascending order.
    /// </summary>
    private static List<SurgeryTensor> PlanTensors(RoutedTensorLayout layout, ExpertSurgeryPlan plan, MoEConfig outConfig)
    {
        var src = layout.Input.Tensors;
        var result = new List<(SurgeryTensor Tensor, int Key)>(src.Names.Count);
        var perExpertDone = new HashSet<int>();
        int lastLayer = -1;
        foreach (var name in src.Names)
        {
            var role = layout.Roles[name];
            if (role.Layer is int l0) lastLayer = l0;
            int key = role.Layer ?? lastLayer;
            var info = src.GetInfo(name);
            if (!RoutedTensorLayout.IsRouted(role.Role))
            {
                result.Add((new SurgeryTensor(name, info.DType, info.Shape, SurgeryTensorKind.Copy, name), key));
                continue;
            }
            int layer = role.Layer!.Value;
            var list = plan.Layers[layer];
            if (role.Role == TensorRole.RoutedExpert && !role.Fused)
            {
                if (!perExpertDone.Add(layer)) continue;
                var group = layout.ByLayer[layer];
                for (int k = 0; k < list.Count; k++)
                {
                    var o = list[k];
                    foreach (var x in group.PerExpert[o.Representative])
                    {
                        var xi = src.GetInfo(x);
                        var newName = layout.RenameExpertTensor(x, layer, o.Representative, k, layout.Roles[x].Projection!.Value, outConfig);
                        result.Add((new SurgeryTensor(newName, xi.DType, xi.Shape,
                            o.Merged ? SurgeryTensorKind.ExpertMerged : SurgeryTensorKind.ExpertCopy, x, layer, k), key));
                    }
                }
                continue;
            }
            long[] shape = [list.Count, .. info.Shape[1..]];
            var kind = role.Role == TensorRole.RoutedExpert ? SurgeryTensorKind.FusedExperts : SurgeryTensorKind.RouterRows;
            result.Add((new SurgeryTensor(name, info.DType, shape, kind, name, layer), key));
        }
        return result.OrderBy(x => x.Key).Select(x => x.Tensor).ToList();
    }

    private static string CheckDestination(ModelCheckpoint input, string outputDir)
    {
        string dest = Path.TrimEndingDirectorySeparator(Path.GetFullPath(outputDir));
        string inputDir = Path.TrimEndingDirectorySeparator(Path.GetFullPath(input.Directory));
        if (string.Equals(dest, inputDir, StringComparison.Ordinal) ||
            inputDir.StartsWith(dest + Path.DirectorySeparatorChar, StringComparison.Ordinal))
            throw new MoeCompressException(ErrorKind.Usage, $"{dest}: the output directory is (or contains) the input checkpoint");
        return dest;
    }

    /// <summary>The "options" block (recorded as the manifest's options) and the other extra properties.</summary>
    private static (JsonObject? Options, List<(string Name, JsonNode? Value)> Extras) SplitManifestProperties(JsonObject? properties)
    {
        var extras = new List<(string, JsonNode?)>();
        JsonObject? manifestOptions = null;
        if (properties is null) return (null, extras);
        foreach (var (name, value) in properties)
        {
            if (name == "options")
            {
                manifestOptions = value as JsonObject
                    ?? throw new MoeCompressException(ErrorKind.Usage, "manifest property 'options' must be a JSON object");
                manifestOptions = (JsonObject)manifestOptions.DeepClone();
            }
            else extras.Add((name, value));
        }
        return (manifestOptions, extras);
    }
}
