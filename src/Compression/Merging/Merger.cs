using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using MoECompress.Compression.Calibration;
using MoECompress.Compression.Model;
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
/// Order of work: option checks and the model's loadability rules first (a bad request fails in well under a second),
/// then the calibration statistics, the clusters (a dry run stops here), the merged experts one layer at a time, the
/// router-row measurement (one streamed pass over a few calibration sequences) and the write. Peak memory: one layer's
/// merged experts, plus what the streamed passes hold.
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

        // Statistics.
        var profile = ProfileProvider.LoadOrCollect(checkpoint, options.Profile, progress, cancellationToken);
        cancellationToken.ThrowIfCancellationRequested();

        // Clusters.
        var routedLayers = moe.MoELayerIndices(includeMtp: true)
            .Where(l => !moe.IsMtpLayer(l) || checkpoint.MtpLayersPresent.Contains(l)).ToList();
        var clusters = new Dictionary<int, IReadOnlyList<ExpertCluster>>();
        var features = new Dictionary<int, string>();
        var keptAlone = new List<SuperExpert>();
        foreach (var layer in routedLayers)
        {
            IReadOnlyList<double[]> points;
            IReadOnlyList<double> frequencies;
            var alone = new HashSet<int>();
            if (profile.HasLayer(layer))
            {
                var stats = profile.Layer(layer);
                var values = stats.MeanOutputAllTokens ?? stats.MeanOutput;
                features[layer] = stats.MeanOutputAllTokens is null ? "mean_output" : "mean_output_all_tokens";
                points = Rows(values, stats.NumExperts, stats.HiddenSize);
                frequencies = stats.Frequencies();
                if (!options.AllowSuperExperts)
                    foreach (var s in profile.SuperExperts.Experts.Where(s => s.Layer == layer))
                    {
                        alone.Add(s.Expert);
                        keptAlone.Add(s);
                    }
            }
            else
            {
                // An MTP layer: no calibration statistics. Cluster its experts on their router rows, merge with equal weights.
                features[layer] = "router_rows";
                using var router = checkpoint.Tensors.ToTensor(checkpoint.Family.RouterWeightName(layer, moe), ScalarType.Float32);
                points = Rows(router.contiguous().data<float>().ToArray(), moe.NumExperts, moe.HiddenSize);
                frequencies = Enumerable.Repeat(1.0, moe.NumExperts).ToArray();
            }
            clusters[layer] = ExpertClustering.ClusterLayer(layer, points, frequencies, outputExperts, alone,
                Math.Max(1, moe.NumGroups), options.Clustering, unchecked((ulong)options.Seed), ClusterSizeLimit(options));
        }
        if (routedLayers.Any(l => !profile.HasLayer(l)))
            notes.Add("MTP layer(s) have no calibration statistics: clustered on router rows, merged with equal weights, router rows not measured");
        progress?.Report($"clustered {routedLayers.Count} layer(s): {moe.NumExperts} → {outputExperts} experts, " +
                         $"{clusters.Values.Sum(c => c.Count(x => x.IsMerged))} merged cluster(s)");

        var source = options.Profile.Profile is { } p ? Path.GetFullPath(p) : "calibrated in memory";
        MergeReport Report(MergedExpertWeights? weights, IReadOnlyDictionary<int, RowDecision>? rows, ExpertSurgeryResult? surgery) => new()
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
            ProfileSource = source,
            CalibrationTokens = profile.Tokens,
            SuperExpertsKeptAlone = keptAlone,
            Layers = routedLayers.Select(l => LayerReport(l, moe.IsMtpLayer(l), features[l], clusters[l], weights, rows?.GetValueOrDefault(l), options.RouterRows)).ToList(),
            Surgery = surgery,
            Notes = notes,
            ElapsedSeconds = clock.Elapsed.TotalSeconds,
        };
        if (options.DryRun) return Report(null, null, null);

        // Merged weights (one layer at a time). SVD merges are cached beside the output when two passes read them; averages
        // are cheaper to recompute than to cache.
        var settings = new ExpertMergeSettings
        {
            Method = options.Method, Rank = options.Rank, Energy = energy, Whiten = options.Whiten, Damping = options.Damping,
            Align = align,
        };
        var cache = (options.RouterRows == RouterRowChoice.Auto || options.Whiten) && options.Method == MergeMethod.Subspace
            ? Path.Combine(Path.GetDirectoryName(outputDir)!, $".{Path.GetFileName(outputDir)}.merge-cache-{Guid.NewGuid():N}")
            : null;
        using var weights = new MergedExpertWeights(checkpoint, clusters, settings, cache, progress);
        if (options.Method == MergeMethod.Subspace && options.Whiten)
            WhitenedLayers(checkpoint, options, weights, routedLayers.Where(profile.HasLayer).ToList(), progress, cancellationToken);

        var rows = ChooseRouterRows(checkpoint, options, clusters, weights, profile, progress, cancellationToken);
        if (options.Method == MergeMethod.Subspace && options.Whiten)
            foreach (var l in routedLayers.Where(l => !profile.HasLayer(l)))
                notes.Add($"layer {l}: no calibration activations (MTP layer), merged without whitening");

        var plan = new ExpertSurgeryPlan
        {
            Operation = "merge",
            Weights = weights,
            Layers = clusters.ToDictionary(kv => kv.Key, kv => (IReadOnlyList<OutputExpert>)kv.Value.Select(c => c.IsMerged
                ? new OutputExpert(c.Representative, c.Members, c.Weights, rows[kv.Key].Rule, Merged: true)
                : OutputExpert.Copy(c.Members[0])).ToList()),
        };
        var manifest = new JsonObject
        {
            ["options"] = OptionsJson(options, outputExperts, energy),
            ["merge"] = Report(weights, rows, null).ToJsonObject(),
        };
        var surgeryOptions = new ExpertSurgeryOptions { Overwrite = options.Overwrite, ManifestProperties = manifest };
        if (options.MaxShardBytes is { } shard) surgeryOptions = surgeryOptions with { MaxShardBytes = shard };
        var result = ExpertSurgery.Write(checkpoint, plan, outputDir!, surgeryOptions, progress, cancellationToken);
        return Report(weights, rows, result);
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

    /// <summary>The router-row rule of one layer and why.</summary>
    private sealed record RowDecision(RouterRowRule Rule, string Basis, double? RepresentativeError, double? WeightedError, long Tokens);

    private static Dictionary<int, RowDecision> ChooseRouterRows(ModelCheckpoint checkpoint, MergeOptions options,
        IReadOnlyDictionary<int, IReadOnlyList<ExpertCluster>> clusters, MergedExpertWeights weights, CalibrationProfile profile,
        IProgress<string>? progress, CancellationToken cancellationToken)
    {
        var rows = new Dictionary<int, RowDecision>();
        if (options.RouterRows != RouterRowChoice.Auto)
        {
            var rule = options.RouterRows == RouterRowChoice.Weighted ? RouterRowRule.Weighted : RouterRowRule.Representative;
            foreach (var l in clusters.Keys) rows[l] = new RowDecision(rule, "forced", null, null, 0);
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
                var rep = probe.Error(l, RouterRowRule.Representative);
                var wtd = probe.Error(l, RouterRowRule.Weighted);
                var rule = wtd is { } w && rep is { } r && w < r ? RouterRowRule.Weighted : RouterRowRule.Representative;
                rows[l] = new RowDecision(rule, "measured", rep, wtd, probe.Tokens(l));
                progress?.Report(string.Create(CultureInfo.InvariantCulture,
                    $"layer {l}: router-row error representative {rep:0.######}, weighted {wtd:0.######} → {MergeReport.Name(rule)}"));
            }
        }
        var weightedVotes = rows.Values.Count(d => d.Rule == RouterRowRule.Weighted);
        var majority = weightedVotes * 2 >= rows.Count && rows.Count > 0 ? RouterRowRule.Weighted : RouterRowRule.Representative;
        foreach (var l in clusters.Keys.Where(l => !rows.ContainsKey(l)))
            rows[l] = clusters[l].Any(c => c.IsMerged)
                ? new RowDecision(majority, "not measured (no calibration statistics); rule of most measured layers", null, null, 0)
                : new RowDecision(RouterRowRule.Representative, "nothing merged", null, null, 0);
        return rows;
    }

    private static MergeLayerReport LayerReport(int layer, bool mtp, string features, IReadOnlyList<ExpertCluster> clusters,
        MergedExpertWeights? weights, RowDecision? row, RouterRowChoice choice)
    {
        var list = clusters.Select((c, k) => new MergeClusterReport(k, c.Members, c.Weights, c.Representative, c.SuperExpert,
            weights is not null && weights.Statistics.TryGetValue((layer, k), out var s) ? s : null)).ToList();
        row ??= new RowDecision(choice == RouterRowChoice.Weighted ? RouterRowRule.Weighted : RouterRowRule.Representative,
            choice == RouterRowChoice.Auto ? "dry run: not measured" : "forced", null, null, 0);
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
