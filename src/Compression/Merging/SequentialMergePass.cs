using System.Globalization;
using System.Text.Json.Nodes;
using MoECompress.Compression.Calibration;
using MoECompress.Compression.Data;
using MoECompress.Compression.Model;
using MoECompress.Compression.Surgery;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Families;

namespace MoECompress.Compression.Merging;

/// <summary>
/// Merging with compressed propagation (<see cref="Quantization.Propagation.Compressed"/>), one decoder layer at a time:
/// the calibration hidden states stream through the model; at each MoE layer the router and expert statistics of that
/// layer are collected on its inputs, its experts are clustered from them, the clusters are merged (whitened merges
/// first collect the merged members' input Hessians of this layer only), the router-row rule is measured on the same
/// inputs, and the layer's outputs are then computed with the merged block — the merged experts and combined router rows,
/// as the merged checkpoint will run them — so layer l+1 is clustered on what it will see after merging. Nothing of layer
/// l but its merged weights (cached on disk for subspace merges) stays when l+1 starts. Super experts are found with the
/// profile rule over the layers measured so far. After each layer the journal records the hidden states, the layer's
/// statistics and its router-row measurement and merge statistics, so an interrupted run resumes to the same result.
/// </summary>
internal static class SequentialMergePass
{
    private const string LayerFilePrefix = "merge-layer-";

    /// <summary>What the pass decided for the decoder layers.</summary>
    public sealed record Result(CalibrationProfile Profile, IReadOnlyDictionary<int, string> Features, IReadOnlyList<SuperExpert> KeptAlone,
        IReadOnlyDictionary<int, RouterRowDecision> Rows);

    /// <summary>Runs the pass; <c>clusters</c> is filled layer by layer (it is the dictionary <c>weights</c> reads).</summary>
    public static Result Run(ModelCheckpoint checkpoint, CalibrationSet set, MergeOptions options, int outputExperts,
        Dictionary<int, IReadOnlyList<ExpertCluster>> clusters, MergedExpertWeights weights, StreamingOptions streaming,
        LayerPassJournal? journal, IProgress<string>? progress, CancellationToken ct)
    {
        var cfg = checkpoint.MoE;
        var model = CalibrationModelInfo.From(cfg, checkpoint.Directory, Calibrator.Sha256Hex(checkpoint.ConfigPath), set.Provenance.TokenizerName);
        var data = CalibrationDataInfo.From(set);
        var collectorOptions = new CalibrationCollectorOptions();
        var finished = new List<MoELayerStatistics>();
        var features = new Dictionary<int, string>();
        var keptAlone = new List<SuperExpert>();
        var rows = new Dictionary<int, RouterRowDecision>();
        CalibrationProfile? profile = null, layerProfile = null;

        // Layer l's clusters from the statistics of layers ≤ l (deterministic: a resumed run repeats them exactly).
        IReadOnlyList<ExpertCluster> Cluster(MoELayerStatistics stats)
        {
            finished.Add(stats);
            profile = CalibrationProfile.Create(model, data, collectorOptions, finished);
            layerProfile = CalibrationProfile.Create(model, data, collectorOptions, [stats]);
            var supers = options.AllowSuperExperts ? [] : profile.SuperExperts.Experts.Where(s => s.Layer == stats.Layer).ToList();
            keptAlone.AddRange(supers);
            var (layerClusters, feature) = Merger.ClusterMeasured(stats, supers, options, cfg, outputExperts);
            features[stats.Layer] = feature;
            return clusters[stats.Layer] = layerClusters;
        }

        foreach (var stats in journal?.RestoreStatistics() ?? [])
        {
            Cluster(stats);
            var (row, mergeStatistics) = ReadLayer(journal!, stats.Layer);
            rows[stats.Layer] = row;
            weights.Restore(stats.Layer, mergeStatistics);
        }
        SequentialLayerPass.Run(checkpoint, set, streaming, journal, "merge", (session, layer) =>
        {
            var l = layer.Index;
            IReadOnlyList<ExpertCluster> layerClusters;
            using (var collector = new CalibrationCollector(collectorOptions))
            {
                session.Observe(layer, collector, ct);
                layerClusters = Cluster(collector.BuildLayers().Single());
            }
            var members = weights.MergedMembers(l);
            if (options.Method == MergeMethod.Subspace && options.Whiten && members.Count > 0)
            {
                using var hessianCollector = new LayerHessianCollector(l, members, [HessianKind.Input, HessianKind.Down]);
                session.Observe(layer, hessianCollector, ct);
                var hessians = hessianCollector.Build();
                try { weights.Precompute(l, hessians); }
                finally
                {
                    foreach (var h in hessians.Values) h.Dispose();
                }
            }
            var row = ChooseRows(session, layer, options, layerClusters, weights, progress, ct);
            rows[l] = row;
            using (var merged = MergedMoEBlock.Build(layer.MoE!, weights.Layer(l), layerClusters, row.Rule))
            {
                layer.MoEReplacement = merged.Block;
                session.Advance(layer, null, ct);
                layer.MoEReplacement = null;
            }
            if (journal is not null)
            {
                WriteLayer(journal, l, row, weights);
                journal.Save(session, layerProfile!);
            }
            progress?.Report($"layer {l}: {cfg.NumExperts} → {layerClusters.Count} experts ({layerClusters.Count(c => c.IsMerged)} merged cluster(s), " +
                             $"{MergeReport.Name(row.Rule)} router rows); the next layer sees the merged layer's outputs");
        }, progress, ct);
        return new Result(profile!, features, keptAlone, rows);
    }

    /// <summary>The router-row rule of a layer: forced by the options, or measured on this layer's inputs (every calibration sequence).</summary>
    private static RouterRowDecision ChooseRows(StreamingSession session, DecoderLayer layer, MergeOptions options, IReadOnlyList<ExpertCluster> clusters,
        MergedExpertWeights weights, IProgress<string>? progress, CancellationToken ct)
    {
        if (!clusters.Any(c => c.IsMerged)) return new RouterRowDecision(RouterRowRule.Representative, "nothing merged", null, null, 0);
        if (options.RouterRows != RouterRowChoice.Auto)
            return RouterRowDecision.Forced(options.RouterRows);
        using var probe = new RouterRowMeasurement(weights, new Dictionary<int, IReadOnlyList<ExpertCluster>> { [layer.Index] = clusters });
        session.Observe(layer, probe, ct);
        var decision = RouterRowDecision.Measured(probe, layer.Index);
        progress?.Report(decision.Describe(layer.Index));
        return decision;
    }

    private static string LayerFile(LayerPassJournal journal, int layer) =>
        Path.Combine(journal.Directory, $"{LayerFilePrefix}{layer.ToString(CultureInfo.InvariantCulture)}.json");

    /// <summary>Journals what cannot be recomputed from the layer's statistics: the router-row measurement (it ran on this
    /// layer's inputs) and the merge statistics (rank and energy kept per projection). Doubles round-trip exactly.</summary>
    private static void WriteLayer(LayerPassJournal journal, int layer, RouterRowDecision row, MergedExpertWeights weights)
    {
        var stats = new JsonArray();
        foreach (var ((l, k), projections) in weights.Statistics.Where(kv => kv.Key.Layer == layer).OrderBy(kv => kv.Key.Expert))
            foreach (var (p, s) in projections.OrderBy(kv => kv.Key))
                stats.Add(new JsonObject
                {
                    ["expert"] = k, ["projection"] = p.ToString(), ["rank_kept"] = s.RankKept, ["full_rank"] = s.FullRank,
                    ["energy_kept"] = s.EnergyKept, ["whitened"] = s.Whitened,
                });
        var json = new JsonObject
        {
            ["layer"] = layer,
            ["rule"] = row.Rule.ToString(), ["basis"] = row.Basis,
            ["representative_error"] = row.RepresentativeError, ["weighted_error"] = row.WeightedError, ["tokens"] = row.Tokens,
            ["statistics"] = stats,
        };
        var file = LayerFile(journal, layer);
        File.WriteAllText(file + ".tmp", json.ToJsonString() + "\n");
        File.Move(file + ".tmp", file, overwrite: true);
    }

    private static (RouterRowDecision, IReadOnlyDictionary<int, IReadOnlyDictionary<ExpertProjection, ProjectionMergeStatistics>>) ReadLayer(
        LayerPassJournal journal, int layer)
    {
        var file = LayerFile(journal, layer);
        try
        {
            var json = JsonNode.Parse(File.ReadAllText(file))!;
            var row = new RouterRowDecision(Enum.Parse<RouterRowRule>(json["rule"]!.GetValue<string>()), json["basis"]!.GetValue<string>(),
                json["representative_error"]?.GetValue<double>(), json["weighted_error"]?.GetValue<double>(), json["tokens"]!.GetValue<long>());
            var stats = new Dictionary<int, IReadOnlyDictionary<ExpertProjection, ProjectionMergeStatistics>>();
            foreach (var g in (json["statistics"] as JsonArray ?? []).GroupBy(n => n!["expert"]!.GetValue<int>()))
                stats[g.Key] = g.ToDictionary(n => Enum.Parse<ExpertProjection>(n!["projection"]!.GetValue<string>()),
                    n => new ProjectionMergeStatistics(n!["rank_kept"]!.GetValue<int>(), n["full_rank"]!.GetValue<int>(),
                        n["energy_kept"]!.GetValue<double>(), n["whitened"]!.GetValue<bool>()));
            return (row, stats);
        }
        catch (Exception e) when (e is IOException or System.Text.Json.JsonException or NullReferenceException or ArgumentException or InvalidOperationException)
        {
            throw new MoeCompressException(ErrorKind.Io, $"{file}: unreadable merge journal entry ({e.Message}); delete {journal.Directory} and start again");
        }
    }
}
