using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using MoECompress.Compression.Calibration;
using MoECompress.Compression.Model;
using MoECompress.Compression.Quantization;
using MoECompress.Compression.Surgery;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Families;
using MoECompress.Formats.Safetensors;
using static TorchSharp.torch;

namespace MoECompress.Compression.Merging;

/// <summary>
/// Merges the routed experts of every MoE layer into E' experts: cluster (<see cref="ExpertClustering"/>), merge each
/// cluster (<see cref="ExpertWeightMerge"/>), choose the router rows by measurement (<see cref="RouterRowMeasurement"/>)
/// and write a standard checkpoint through <see cref="ExpertSurgery"/>.
/// </summary>
/// <remarks>
/// Order of work: option checks and the model's loadability rules first (a bad request fails in well under a second).
/// With compressed propagation (the default when the statistics are measured in this run) one sequential pass
/// (<see cref="SequentialMergePass"/>) clusters, merges and measures each layer before the next sees its merged outputs,
/// journaled for <see cref="MergeOptions.Resume"/>; with original propagation (a saved profile) the statistics come
/// first, then the clusters (a dry run stops here), the merged experts one layer at a time and the router-row
/// measurement (one streamed pass over a few calibration sequences). Then the write. Peak memory: one decoder layer's
/// weights and merged experts, plus the calibration hidden states.
/// </remarks>
public static class Merger
{
    /// <summary>Runs <see cref="Run"/> on a worker thread.</summary>
    public static Task<MergeReport> RunAsync(MergeOptions options, IProgress<string>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        return Task.Run(() => Run(options, progress, cancellationToken), cancellationToken);
    }

    /// <summary>
    /// Merges <see cref="MergeOptions.Model"/> into <see cref="MergeOptions.Output"/> (or, with
    /// <see cref="MergeOptions.DryRun"/>, only reports the clusters).
    /// </summary>
    /// <exception cref="MoeCompressException">Usage (bad options, missing folders, a profile without the Hessians
    /// whitening needs), Infeasible (an expert count the model cannot load, super experts that leave no room, FP8/MXFP4
    /// experts, a family without a forward pass when one is needed), Io (output exists), and the checkpoint's own errors.</exception>
    public static MergeReport Run(MergeOptions options, IProgress<string>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        var clock = Stopwatch.StartNew();
        Validate(options);
        var modelDir = Path.GetFullPath(options.Model);
        if (!Directory.Exists(modelDir)) throw Usage($"{modelDir}: model folder not found");
        var outputDir = options.Output is null ? null : Path.GetFullPath(options.Output);
        if (!options.DryRun) CheckOutput(modelDir, outputDir!, options.Overwrite);

        using var checkpoint = ModelCheckpoint.Open(modelDir, cancellationToken: cancellationToken);
        var moe = checkpoint.MoE;
        if (moe.NumMoELayers == 0) throw new MoeCompressException(ErrorKind.Infeasible, $"{checkpoint.ConfigPath}: the model has no MoE layer to merge");
        var outputExperts = ResolveOutputCount(options, moe);
        CheckStorage(checkpoint);
        if (options.Profile.Profile is null || options.RouterRows == RouterRowChoice.Auto)
            ModelEngine.EnsureSupported(checkpoint.Family, checkpoint.Config);
        var energy = EffectiveEnergy(options);
        var notes = new List<string>();
        var align = options.Align;
        if (align && HasExpertBiases(checkpoint))
        {
            align = false;
            notes.Add("neuron alignment skipped: the experts have biases, which the surgery averages in their stored order");
        }
        if (align && moe.ExpertIntermediateSize > LinearAssignment.ExactLimit)
            notes.Add($"neuron alignment: intermediate size {moe.ExpertIntermediateSize} > {LinearAssignment.ExactLimit}, permutations chosen greedily (not the exact optimum)");

        var compressed = ResolvePropagation(options);
        if (options.Resume && !compressed)
            throw Usage("--resume: only a merge with compressed propagation journals its layers; this one uses original propagation (--propagate original or --profile)");
        var settings = new ExpertMergeSettings
        {
            Method = options.Method, Rank = options.Rank, Energy = energy, Whiten = options.Whiten, Damping = options.Damping,
            Align = align,
        };
        var routedLayers = moe.MoELayerIndices(includeMtp: true)
            .Where(l => !moe.IsMtpLayer(l) || checkpoint.MtpLayersPresent.Contains(l)).ToList();
        var clusters = new Dictionary<int, IReadOnlyList<ExpertCluster>>();
        var features = new Dictionary<int, string>();
        var keptAlone = new List<SuperExpert>();
        CalibrationProfile profile;
        Dictionary<int, RouterRowDecision>? rows = null;
        LayerPassJournal? journal = null;
        MergedExpertWeights? weights = null;
        try
        {
            if (compressed)
            {
                // One sequential pass decides, merges and measures each layer before the next sees its outputs.
                var set = options.Profile.LoadTokens(checkpoint, progress, cancellationToken);
                if (!options.DryRun)
                    journal = LayerPassJournal.Open(outputDir!, "merge", LayerPassJournal.Fingerprint(set, CalibrationProfile.CurrentToolVersion,
                        Calibrator.Sha256Hex(checkpoint.ConfigPath), OptionsJson(options, outputExperts, energy).ToJsonString(), align.ToString(),
                        options.Profile.MicroBatch.ToString(CultureInfo.InvariantCulture)), options.Resume, "--resume");
                // Subspace merges are cached (in the journal, so a resumed run reads what the interrupted one computed).
                var cache = options.Method != MergeMethod.Subspace ? null
                    : journal is not null ? Path.Combine(journal.Directory, "merged")
                    : Path.Combine(Path.GetTempPath(), $"moe-compress-merge-dry-run-{Guid.NewGuid():N}");
                weights = new MergedExpertWeights(checkpoint, clusters, settings, cache, progress, keepCache: journal is not null);
                progress?.Report($"sequential merge ({moe.NumExperts} → {outputExperts} experts) over {checkpoint.Directory}: " +
                                 $"{set.Count} x {set.SeqLen} = {(long)set.Count * set.SeqLen:N0} tokens, each layer merged before the next is measured (compressed propagation)");
                var result = SequentialMergePass.Run(checkpoint, set, options, outputExperts, clusters, weights,
                    new StreamingOptions { MicroBatchTokens = options.Profile.MicroBatch }, journal, progress, cancellationToken);
                (profile, rows) = (result.Profile, new Dictionary<int, RouterRowDecision>(result.Rows));
                foreach (var (l, f) in result.Features) features[l] = f;
                keptAlone.AddRange(result.KeptAlone);
                notes.Add("compressed propagation: each layer was clustered and its router rows measured on the outputs of the already-merged " +
                          "layers before it; super experts by the profile rule over the layers measured so far");
            }
            else
            {
                profile = ProfileProvider.LoadOrCollect(checkpoint, options.Profile, progress, cancellationToken);
                foreach (var layer in routedLayers.Where(profile.HasLayer))
                {
                    var supers = options.AllowSuperExperts ? [] : profile.SuperExperts.Experts.Where(s => s.Layer == layer).ToList();
                    keptAlone.AddRange(supers);
                    (clusters[layer], features[layer]) = ClusterMeasured(profile.Layer(layer), supers, options, moe, outputExperts);
                }
            }
            cancellationToken.ThrowIfCancellationRequested();

            // MTP layers: no calibration statistics. Cluster their experts on their router rows, merge with equal weights.
            foreach (var layer in routedLayers.Where(l => !profile.HasLayer(l)))
            {
                features[layer] = "router_rows";
                using var router = checkpoint.Tensors.ToTensor(checkpoint.Family.RouterWeightName(layer, moe), ScalarType.Float32);
                var points = Rows(router.contiguous().data<float>().ToArray(), moe.NumExperts, moe.HiddenSize);
                clusters[layer] = ExpertClustering.ClusterLayer(layer, points, Enumerable.Repeat(1.0, moe.NumExperts).ToArray(), outputExperts, new HashSet<int>(),
                    Math.Max(1, moe.NumGroups), options.Clustering, unchecked((ulong)options.Seed), ClusterSizeLimit(options));
            }
            if (routedLayers.Any(l => !profile.HasLayer(l)))
                notes.Add("MTP layer(s) have no calibration statistics: clustered on router rows, merged with equal weights, router rows not measured");
            progress?.Report($"clustered {routedLayers.Count} layer(s): {moe.NumExperts} → {outputExperts} experts, " +
                             $"{clusters.Values.Sum(c => c.Count(x => x.IsMerged))} merged cluster(s)");

            var source = options.Profile.Profile is { } p ? Path.GetFullPath(p) : "calibrated in memory";
            MergeReport Report(IReadOnlyDictionary<int, RouterRowDecision>? decisions, ExpertSurgeryResult? surgery, double elapsed) => new()
            {
                ToolVersion = CalibrationProfile.CurrentToolVersion,
                Model = modelDir,
                Output = options.DryRun ? null : outputDir,
                DryRun = options.DryRun,
                Family = checkpoint.Family.Name,
                InputExperts = moe.NumExperts,
                OutputExperts = outputExperts,
                Method = options.Method,
                Clustering = options.Clustering,
                MaxClusterSize = options.Clustering == ClusteringMethod.Hierarchical ? ClusterSizeLimit(options) : null,
                Rank = options.Method == MergeMethod.Subspace ? options.Rank : null,
                Energy = energy,
                Whiten = options.Whiten,
                Align = align,
                RouterRows = options.RouterRows,
                Propagation = compressed ? Propagation.Compressed : Propagation.Original,
                ProfileSource = source,
                CalibrationTokens = profile.Tokens,
                Statistics = profile,
                SuperExpertsKeptAlone = keptAlone,
                Layers = routedLayers.Select(l => LayerReport(l, moe.IsMtpLayer(l), features[l], clusters[l], weights, decisions?.GetValueOrDefault(l), options.RouterRows)).ToList(),
                Surgery = surgery,
                Notes = notes,
                ElapsedSeconds = elapsed,
            };
            if (options.DryRun && !compressed) return Report(null, null, clock.Elapsed.TotalSeconds);

            if (!compressed)
            {
                // Merged weights (one layer at a time). SVD merges are cached beside the output when two passes read them;
                // averages are cheaper to recompute than to cache.
                var cache = (options.RouterRows == RouterRowChoice.Auto || options.Whiten) && options.Method == MergeMethod.Subspace
                    ? Path.Combine(Path.GetDirectoryName(outputDir)!, $".{Path.GetFileName(outputDir)}.merge-cache-{Guid.NewGuid():N}")
                    : null;
                weights = new MergedExpertWeights(checkpoint, clusters, settings, cache, progress);
                if (options.Method == MergeMethod.Subspace && options.Whiten)
                    WhitenedLayers(checkpoint, options, weights, routedLayers.Where(profile.HasLayer).ToList(), progress, cancellationToken);
                rows = ChooseRouterRows(checkpoint, options, clusters, weights, profile, progress, cancellationToken);
            }
            else CompleteRows(rows!, clusters, options.RouterRows);
            if (options.Method == MergeMethod.Subspace && options.Whiten)
                foreach (var l in routedLayers.Where(l => !profile.HasLayer(l)))
                    notes.Add($"layer {l}: no calibration activations (MTP layer), merged without whitening");
            if (options.DryRun) return Report(rows, null, clock.Elapsed.TotalSeconds);

            var plan = new ExpertSurgeryPlan
            {
                Operation = "merge",
                Weights = weights,
                Layers = clusters.ToDictionary(kv => kv.Key, kv => (IReadOnlyList<OutputExpert>)kv.Value.Select(c => c.IsMerged
                    ? new OutputExpert(c.Representative, c.Members, c.Weights, rows![kv.Key].Rule, Merged: true)
                    : OutputExpert.Copy(c.Members[0])).ToList()),
            };
            var manifest = new JsonObject
            {
                ["options"] = OptionsJson(options, outputExperts, energy),
                ["merge"] = Report(rows, null, 0).ToJsonObject(), // no wall-clock time: equal runs write equal bytes
            };
            var surgeryOptions = new ExpertSurgeryOptions { Overwrite = options.Overwrite, ManifestProperties = manifest };
            if (options.MaxShardBytes is { } shard) surgeryOptions = surgeryOptions with { MaxShardBytes = shard };
            var written = ExpertSurgery.Write(checkpoint, plan, outputDir!, surgeryOptions, progress, cancellationToken);
            journal?.Delete();
            return Report(rows, written, clock.Elapsed.TotalSeconds);
        }
        finally
        {
            weights?.Dispose();
        }
    }

    /// <summary>
    /// Whitened subspace merging, one decoder layer at a time: the calibration tokens stream through the model, and at each
    /// MoE layer the merged members' input Hessians (Σ x xᵀ, Σ h hᵀ) are collected for that layer only, the layer's clusters
    /// are merged and cached on disk, and the Hessians are freed before the next layer.
    /// </summary>
    private static void WhitenedLayers(ModelCheckpoint checkpoint, MergeOptions options, MergedExpertWeights weights,
        IReadOnlyList<int> layers, IProgress<string>? progress, CancellationToken ct)
    {
        var set = options.Profile.LoadTokens(checkpoint, progress, ct);
        progress?.Report($"whitening: collecting input Hessians layer by layer on {set.Count} x {set.SeqLen} tokens");
        var engine = new ModelEngine(checkpoint);
        using var session = engine.CreateRunner(new StreamingOptions { MicroBatchTokens = options.Profile.MicroBatch }).Start(set.Sequences, null, ct);
        var last = layers.DefaultIfEmpty(-1).Max();
        while (session.NextLayer <= last)
        {
            var l = session.NextLayer;
            var members = weights.MergedMembers(l);
            if (!layers.Contains(l) || members.Count == 0)
            {
                session.RunNextLayer(null, ct);
                continue;
            }
            using var layer = session.LoadNextLayer();
            using var collector = new LayerHessianCollector(l, members, [HessianKind.Input, HessianKind.Down]);
            session.Advance(layer, collector, ct);
            var hessians = collector.Build();
            try
            {
                weights.Precompute(l, hessians);
            }
            finally
            {
                foreach (var h in hessians.Values) h.Dispose();
            }
        }
    }

    private static Dictionary<int, RouterRowDecision> ChooseRouterRows(ModelCheckpoint checkpoint, MergeOptions options,
        IReadOnlyDictionary<int, IReadOnlyList<ExpertCluster>> clusters, MergedExpertWeights weights, CalibrationProfile profile,
        IProgress<string>? progress, CancellationToken cancellationToken)
    {
        var rows = new Dictionary<int, RouterRowDecision>();
        if (options.RouterRows != RouterRowChoice.Auto)
        {
            CompleteRows(rows, clusters, options.RouterRows);
            return rows;
        }

        var measured = clusters.Where(kv => profile.HasLayer(kv.Key) && kv.Value.Any(c => c.IsMerged))
            .ToDictionary(kv => kv.Key, kv => kv.Value);
        if (measured.Count > 0)
        {
            var data = options.Profile.DataOptions with { Samples = options.RouterSamples };
            var set = CalibrationPass.LoadTokens(checkpoint, options.Profile.Data, data, progress, cancellationToken);
            progress?.Report($"measuring router rows on {set.Count} x {set.SeqLen} tokens");
            using var probe = new RouterRowMeasurement(weights, measured);
            CalibrationPass.Run(checkpoint, set, probe, new StreamingOptions { MicroBatchTokens = options.Profile.MicroBatch }, progress, cancellationToken);
            foreach (var l in measured.Keys)
            {
                rows[l] = RouterRowDecision.Measured(probe, l);
                progress?.Report(rows[l].Describe(l));
            }
        }
        CompleteRows(rows, clusters, options.RouterRows);
        return rows;
    }

    /// <summary>The rule of the layers without a measurement: nothing merged, or (MTP layers) the rule of most measured layers.</summary>
    private static void CompleteRows(Dictionary<int, RouterRowDecision> rows, IReadOnlyDictionary<int, IReadOnlyList<ExpertCluster>> clusters,
        RouterRowChoice choice)
    {
        if (choice != RouterRowChoice.Auto)
        {
            foreach (var l in clusters.Keys.Where(l => !rows.ContainsKey(l)).ToList()) rows[l] = RouterRowDecision.Forced(choice);
            return;
        }
        var measured = rows.Values.Where(d => d.Basis == "measured").ToList();
        var votes = measured.Count > 0 ? measured : rows.Values.ToList();
        var weightedVotes = votes.Count(d => d.Rule == RouterRowRule.Weighted);
        var majority = weightedVotes * 2 >= votes.Count && votes.Count > 0 ? RouterRowRule.Weighted : RouterRowRule.Representative;
        foreach (var l in clusters.Keys.Where(l => !rows.ContainsKey(l)).ToList())
            rows[l] = clusters[l].Any(c => c.IsMerged)
                ? new RouterRowDecision(majority, "not measured (no calibration statistics); rule of most measured layers", null, null, 0)
                : new RouterRowDecision(RouterRowRule.Representative, "nothing merged", null, null, 0);
    }

    /// <summary>
    /// One measured layer's clusters (and the feature they compare) from its calibration statistics: mean expert outputs,
    /// selection frequencies as merge weights, each super expert in <paramref name="supers"/> alone.
    /// </summary>
    internal static (IReadOnlyList<ExpertCluster> Clusters, string Feature) ClusterMeasured(MoELayerStatistics stats, IEnumerable<SuperExpert> supers,
        MergeOptions options, MoEConfig moe, int outputExperts)
    {
        var values = stats.MeanOutputAllTokens ?? stats.MeanOutput;
        var feature = stats.MeanOutputAllTokens is null ? "mean_output" : "mean_output_all_tokens";
        var points = Rows(values, stats.NumExperts, stats.HiddenSize);
        var alone = supers.Select(s => s.Expert).ToHashSet();
        var clusters = ExpertClustering.ClusterLayer(stats.Layer, points, stats.Frequencies(), outputExperts, alone,
            Math.Max(1, moe.NumGroups), options.Clustering, unchecked((ulong)options.Seed), ClusterSizeLimit(options));
        return (clusters, feature);
    }

    private static MergeLayerReport LayerReport(int layer, bool mtp, string features, IReadOnlyList<ExpertCluster> clusters,
        MergedExpertWeights? weights, RouterRowDecision? row, RouterRowChoice choice)
    {
        var list = clusters.Select((c, k) => new MergeClusterReport(k, c.Members, c.Weights, c.Representative, c.SuperExpert,
            weights is not null && weights.Statistics.TryGetValue((layer, k), out var s) ? s : null)).ToList();
        row ??= choice == RouterRowChoice.Auto
            ? new RouterRowDecision(RouterRowRule.Representative, "dry run: not measured", null, null, 0)
            : RouterRowDecision.Forced(choice);
        return new MergeLayerReport(layer, mtp, features, list, row.Rule, row.Basis, row.RepresentativeError, row.WeightedError, row.Tokens);
    }

    private static void Validate(MergeOptions o)
    {
        if (string.IsNullOrWhiteSpace(o.Model)) throw Usage("no model folder given");
        if (!o.DryRun && string.IsNullOrWhiteSpace(o.Output)) throw Usage("no output folder given (--output), and not a dry run");
        if (o.Ratio is null == o.Keep is null) throw Usage("give exactly one of --ratio (fraction of experts to remove) and --keep (experts to keep)");
        if (o.Ratio is { } r && !(r > 0 && r < 1)) throw Usage($"--ratio {r.ToString(CultureInfo.InvariantCulture)}: must be between 0 and 1 (exclusive)");
        if (o.Keep is < 1) throw Usage($"--keep {o.Keep}: at least one expert must remain");
        if (o.Method == MergeMethod.Average && (o.Rank is not null || o.Energy is not null || o.Whiten))
            throw Usage("--rank, --energy and --whiten apply to --method subspace only");
        if (o.Rank is not null && o.Energy is not null) throw Usage("give --rank or --energy, not both");
        if (o.Rank is < 1) throw Usage($"--rank {o.Rank}: must be at least 1");
        if (o.Energy is { } e && !(e > 0 && e <= 1)) throw Usage($"--energy {e.ToString(CultureInfo.InvariantCulture)}: must be in (0, 1]");
        if (!(o.Damping >= 0) || !double.IsFinite(o.Damping)) throw Usage($"whitening damping {o.Damping}: must be a non-negative number");
        if (o.MaxClusterSize is < 0) throw Usage($"--max-cluster-size {o.MaxClusterSize}: must be 0 (no limit) or more");
        if (o.RouterSamples < 1) throw Usage($"--router-samples {o.RouterSamples}: must be at least 1");
        if (o.Profile.SeqLen < 1) throw Usage($"--seq-len {o.Profile.SeqLen}: must be at least 1");
        if (o.Profile.MicroBatch < 1) throw Usage($"--micro-batch {o.Profile.MicroBatch}: must be at least 1");
        if (o.MaxShardBytes is < 1) throw Usage($"--max-shard-bytes {o.MaxShardBytes}: must be positive");
        if (!Enum.IsDefined(o.Method) || !Enum.IsDefined(o.Clustering) || !Enum.IsDefined(o.RouterRows))
            throw Usage("unknown method, clustering or router-row option");
    }

    /// <summary>True for compressed propagation (see <see cref="MergeOptions.Propagate"/>); an explicit
    /// <see cref="Propagation.Compressed"/> the options cannot honour is a usage error naming the option in the way.</summary>
    private static bool ResolvePropagation(MergeOptions options)
    {
        var obstacle = options.Profile.Profile is not null || options.Profile.Loaded is not null
            ? "--profile holds statistics of the original model; give --data to measure each layer after merging the ones before it"
            : null;
        if (options.Propagate == Propagation.Compressed && obstacle is not null)
            throw Usage($"--propagate compressed: {obstacle}");
        return options.Propagate != Propagation.Original && obstacle is null;
    }

    /// <summary>True when <paramref name="options"/> merge with compressed propagation: one sequential pass that clusters and
    /// merges each layer after merging the ones before it (see <see cref="MergeOptions.Propagate"/>).</summary>
    /// <exception cref="MoeCompressException">Usage: compressed propagation asked for where it cannot be honoured.</exception>
    public static bool UsesCompressedPropagation(MergeOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return ResolvePropagation(options);
    }

    /// <summary>The journal folder a compressed-propagation merge writing <paramref name="output"/> keeps beside it until it
    /// finishes (what <see cref="MergeOptions.Resume"/> continues).</summary>
    public static string JournalDirectory(string output) => LayerPassJournal.PathFor(output, "merge");

    private static void CheckOutput(string modelDir, string outputDir, bool overwrite)
    {
        static string Slash(string p) => p.TrimEnd(Path.DirectorySeparatorChar) + Path.DirectorySeparatorChar;
        if (Slash(outputDir).StartsWith(Slash(modelDir), StringComparison.Ordinal) || Slash(modelDir).StartsWith(Slash(outputDir), StringComparison.Ordinal))
            throw Usage($"{outputDir}: the output folder must not be the model folder, inside it or above it");
        if ((Directory.Exists(outputDir) || File.Exists(outputDir)) && !overwrite)
            throw new MoeCompressException(ErrorKind.Io, $"{outputDir}: already exists (use --overwrite to replace it)");
    }

    /// <summary>The experts (clusters) per MoE layer the merge produces, with the options and the model's MoE invariants
    /// checked from its config alone — no weights read, nothing calibrated.</summary>
    /// <exception cref="MoeCompressException">Usage or Infeasible, as <see cref="Run"/> would throw before any work.</exception>
    public static int PlanExpertCount(MoEConfig moe, MergeOptions options)
    {
        ArgumentNullException.ThrowIfNull(moe);
        ArgumentNullException.ThrowIfNull(options);
        Validate(options);
        return ResolveOutputCount(options, moe);
    }

    private static int ResolveOutputCount(MergeOptions options, MoEConfig moe)
    {
        int count;
        string option;
        if (options.Keep is { } keep)
        {
            count = keep;
            option = "--keep";
        }
        else
        {
            var ratio = options.Ratio!.Value;
            count = (int)Math.Round(moe.NumExperts * (1 - ratio), MidpointRounding.AwayFromZero);
            option = string.Create(CultureInfo.InvariantCulture, $"--ratio {ratio:0.####} gives {moe.NumExperts} × {1 - ratio:0.####} → experts");
        }
        MoEInvariants.CheckOutputCount(moe, count, option);
        if (count == moe.NumExperts)
            throw Usage($"{option} = {count}: keeps all {moe.NumExperts} experts, nothing to merge");
        return count;
    }

    /// <summary>Refuses experts whose stored weights are FP8 or MXFP4: merging them would need a requantization this tool does not do.</summary>
    private static void CheckStorage(ModelCheckpoint checkpoint)
    {
        var moe = checkpoint.MoE;
        if (moe.Mxfp4Experts)
            throw new MoeCompressException(ErrorKind.Infeasible,
                $"{checkpoint.Directory}: the routed experts are stored as MXFP4; merging needs dequantized (bf16/f16/f32) expert weights — convert the checkpoint first");
        var layer = moe.MoELayerIndices().First();
        var r = checkpoint.Family.ExpertTensor(layer, 0, ExpertProjection.Gate, moe);
        var dtype = checkpoint.Tensors.GetInfo(r.TensorName).DType;
        if (dtype.IsFloat8())
            throw new MoeCompressException(ErrorKind.Infeasible,
                $"{checkpoint.Directory}: tensor '{r.TensorName}' is {dtype}; merging FP8-stored experts is not supported (merged weights could not be stored in the experts' FP8 block format) — convert the checkpoint to bf16 first");
    }

    /// <summary>The limit handed to the clustering: null (none) for 0, 1 (raised to ⌈E/E'⌉ there) for the balanced default.</summary>
    private static int? ClusterSizeLimit(MergeOptions o) => o.MaxClusterSize switch
    {
        null => 1,
        0 => null,
        var n => n,
    };

    private static bool HasExpertBiases(ModelCheckpoint checkpoint)
    {
        var moe = checkpoint.MoE;
        return checkpoint.Family.ExpertTensor(moe.MoELayerIndices().First(), 0, ExpertProjection.Gate, moe).BiasName is not null;
    }

    private static double? EffectiveEnergy(MergeOptions o) =>
        o.Method != MergeMethod.Subspace || o.Rank is not null ? null : o.Energy ?? MergeOptions.DefaultEnergy;

    private static JsonObject OptionsJson(MergeOptions o, int outputExperts, double? energy) => new()
    {
        ["model"] = Path.GetFullPath(o.Model),
        ["ratio"] = o.Ratio,
        ["keep"] = o.Keep,
        ["output_experts"] = outputExperts,
        ["method"] = MergeReport.Name(o.Method),
        ["clustering"] = MergeReport.Name(o.Clustering),
        ["max_cluster_size"] = o.MaxClusterSize,
        ["rank"] = o.Rank,
        ["energy"] = energy,
        ["whiten"] = o.Whiten,
        ["align"] = o.Align,
        ["damping"] = o.Damping,
        ["router_rows"] = MergeReport.Name(o.RouterRows),
        ["router_samples"] = o.RouterSamples,
        ["allow_super_experts"] = o.AllowSuperExperts,
        ["seed"] = o.Seed,
        ["profile"] = o.Profile.Profile is null ? null : Path.GetFullPath(o.Profile.Profile),
        ["data"] = o.Profile.Data is null ? null : Path.GetFullPath(o.Profile.Data),
        ["samples"] = o.Profile.Samples,
        ["seq_len"] = o.Profile.SeqLen,
        ["data_seed"] = o.Profile.Seed,
    };

    private static double[][] Rows(float[] values, int rows, int columns)
    {
        if (values.Length != (long)rows * columns) throw new ArgumentException($"expected {rows}x{columns} values, found {values.Length}");
        return Enumerable.Range(0, rows).Select(r => values.AsSpan(r * columns, columns).ToArray().Select(v => (double)v).ToArray()).ToArray();
    }

    private static MoeCompressException Usage(string message) => new(ErrorKind.Usage, message);
}
