using System.Globalization;
using MoECompress.Compression.Calibration;
using MoECompress.Compression.Data;
using MoECompress.Compression.Importance;
using MoECompress.Compression.Model;
using MoECompress.Compression.Surgery;
using MoECompress.Formats.Families;

namespace MoECompress.Compression.Pruning;

/// <summary>
/// Pruning with compressed propagation (<see cref="Quantization.Propagation.Compressed"/>), one decoder layer at a time:
/// the calibration hidden states stream through the model; at each MoE layer the router and expert statistics of that
/// layer are collected on its inputs, its kept experts are chosen from them, and the layer's outputs are then computed
/// with only those experts (the router restricted to the kept rows, exactly as in the pruned checkpoint), so layer l+1
/// is measured on what it will see after pruning. Nothing of layer l stays in memory when l+1 starts; memory is one
/// layer's weights plus the hidden states. Super experts are found with the profile rule applied to the layers measured
/// so far (the rule's percentile and maximum cannot see later layers yet). After each layer the journal records the
/// hidden states and the statistics, so an interrupted run resumes to the same decisions.
/// </summary>
internal static class SequentialPrunePass
{
    public static PruneDecisions Run(ModelCheckpoint checkpoint, CalibrationSet set, IExpertScorer scorer, int keep, bool allowSuperExperts,
        StreamingOptions streaming, LayerPassJournal? journal, IProgress<string>? progress, CancellationToken ct)
    {
        var cfg = checkpoint.MoE;
        var groups = Math.Max(1, cfg.NumGroups);
        var model = CalibrationModelInfo.From(cfg, checkpoint.Directory, Calibrator.Sha256Hex(checkpoint.ConfigPath), set.Provenance.TokenizerName);
        var data = CalibrationDataInfo.From(set);
        var collectorOptions = new CalibrationCollectorOptions();
        var finished = new List<MoELayerStatistics>();
        var selections = new SortedDictionary<int, LayerSelection>();
        var scores = new Dictionary<int, double[]>();
        var protectedMap = new SortedDictionary<int, IReadOnlyCollection<int>>();
        CalibrationProfile? profile = null, layerProfile = null;

        // Layer l's decision from the statistics of layers ≤ l (deterministic: a resumed run repeats it exactly).
        LayerSelection Decide(MoELayerStatistics stats)
        {
            var l = stats.Layer;
            finished.Add(stats);
            profile = CalibrationProfile.Create(model, data, collectorOptions, finished);
            layerProfile = CalibrationProfile.Create(model, data, collectorOptions, [stats]); // scored alone, journaled alone
            var context = new ExpertScoringContext { Profile = profile, Checkpoint = checkpoint, Tokens = set, Streaming = streaming, Progress = progress };
            var layerScores = scorer.Score(context with { Profile = layerProfile }, ct);
            scores[l] = layerScores.Of(l).ToArray();
            IReadOnlyCollection<int> protect = allowSuperExperts ? []
                : profile.SuperExperts.Experts.Where(s => s.Layer == l).Select(s => s.Expert).Order().ToList();
            if (protect.Count > 0) protectedMap[l] = protect;
            KeptExpertChooser.CheckFeasible(l, cfg.NumExperts, keep, groups, protect);
            var selection = scorer.SelectKept(context, layerScores,
                new KeepRequest { Keep = keep, Groups = groups, Protected = protectedMap, Layers = [l] }, ct)[l];
            KeptExpertChooser.Verify(l, cfg.NumExperts, selection.Kept, keep, groups, protect);
            MoEInvariants.CheckGroupBalance(cfg, l, selection.Kept);
            return selections[l] = selection;
        }

        foreach (var stats in journal?.RestoreStatistics() ?? []) Decide(stats);
        SequentialLayerPass.Run(checkpoint, set, streaming, journal, "prune", (session, layer) =>
        {
            var l = layer.Index;
            LayerSelection selection;
            using (var collector = new CalibrationCollector(collectorOptions))
            {
                session.Observe(layer, collector, ct);
                selection = Decide(collector.BuildLayers().Single());
            }
            var kept = new bool[cfg.NumExperts];
            foreach (var e in selection.Kept) kept[e] = true;
            layer.MoEOptions = new MoEForwardOptions { KeptExperts = kept };
            session.Advance(layer, null, ct);
            journal?.Save(session, layerProfile!);
            progress?.Report(string.Create(CultureInfo.InvariantCulture,
                $"layer {l}: kept {selection.Kept.Count} of {cfg.NumExperts} experts; the next layer sees the pruned layer's outputs"));
        }, progress, ct);
        return new PruneDecisions(profile!, new ExpertScores(scorer.Name, scores), selections, protectedMap);
    }
}

/// <summary>What a prune decided per MoE layer, and from which statistics: the profile the decisions read, the scores,
/// the kept experts and the protected (super) experts.</summary>
internal sealed record PruneDecisions(CalibrationProfile Profile, ExpertScores Scores, IReadOnlyDictionary<int, LayerSelection> Selections,
    IReadOnlyDictionary<int, IReadOnlyCollection<int>> Protected);
