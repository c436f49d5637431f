using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using MoECompress.Compression.Calibration;
using MoECompress.Compression.Data;
using MoECompress.Compression.Importance;
using MoECompress.Compression.Model;
using MoECompress.Compression.Quantization;
using MoECompress.Compression.Surgery;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Families;

namespace MoECompress.Compression.Pruning;

/// <summary>
/// Expert pruning (the <c>moe-compress prune</c> command): removes the least important routed experts of every MoE layer
/// and writes a standard checkpoint with E' experts per layer.
/// </summary>
/// <remarks>
/// <para>Order of work: the options and the expert count E' are validated against the MoE invariants
/// (<see cref="MoEInvariants.CheckOutputCount"/>: top-k ≤ E', DeepSeek group divisibility and reach) and the output path
/// is checked before anything is loaded or calibrated, so impossible requests fail at once; then the calibration
/// profile is loaded or collected (<see cref="ProfileProvider.LoadOrCollect"/>; Hessians are not collected); protected
/// super experts are checked against E'; the experts are scored (<see cref="IExpertScorer.Score"/>) and each layer's
/// kept set is chosen (<see cref="IExpertScorer.SelectKept"/>); <see cref="PruneOptions.DryRun"/> stops here; otherwise
/// <see cref="ExpertSurgery.Write"/> writes the checkpoint atomically.</para>
/// <para>Uniform pruning keeps the same E' in every layer. With DeepSeek group-limited routing every group keeps
/// E'/n_group. MTP layers (no calibration statistics) are cut to the same E' by the L2 norm of their router rows
/// (<see cref="RouterRowNorms"/>), which the report says. Shared experts are never touched.</para>
/// <para>Global pruning normalises each layer's scores (<see cref="ExpertScores.Normalized"/>), removes the lowest across
/// layers (<see cref="GlobalExpertBudget"/>, each layer keeping at least the smallest loadable count) and, since stock
/// runtimes need one count, equalises every layer to E' = the smallest loadable count ≥ max_l k_l, keeping each layer's
/// next-best experts by the method's own choice at E'. The report gives k_l, E', the extra experts and the achieved
/// versus requested reduction.</para>
/// <para>Report files: the report's JSON is recorded in the output's manifest under "prune" (the plan; sizes are in the
/// manifest's own fields). The caller (CLI) writes prune-report.json/.md from the returned <see cref="PruneReport"/>,
/// e.g. next to or into the output folder, after this call has committed it.</para>
/// </remarks>
public static class Pruner
{
    /// <summary>
    /// The method used when <see cref="PruneOptions.Method"/> is null: REAP. Measured on the bundled demo model
    /// (calibration 32 × 256 tokens, held-out PPL over 16k tokens, base PPL 41.1): removing 25% of the experts, REAP
    /// 43.7 (mean KL 0.064) vs NAEE 45.1 (0.093); removing 50%, REAP 56.3 (0.284) vs NAEE 55.4 (0.273). REAP is the
    /// better or within 2% of the best at both ratios and needs no model run (under a second vs minutes for NAEE).
    /// </summary>
    public const string DefaultMethod = ReapScorer.ScorerName;

    /// <summary>Runs the pruning described by <paramref name="options"/>.</summary>
    /// <exception cref="MoeCompressException">Usage (bad options, unknown method, profile of another model), Infeasible
    /// (E' breaks a MoE invariant, super experts do not fit, nothing to prune), Io (output exists without
    /// <see cref="PruneOptions.Overwrite"/>), and the errors of reading the checkpoint or the calibration data.</exception>
    public static PruneReport Run(PruneOptions options, IProgress<string>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(options.Profile);
        var clock = Stopwatch.StartNew();
        var scorer = ExpertScorers.Get(options.Method ?? DefaultMethod,
            new ExpertScorerOptions { NaeeExhaustiveLimit = options.NaeeExhaustiveLimit });
        CheckCountOptions(options);
        var output = CheckOutputPath(options);

        using var checkpoint = ModelCheckpoint.Open(options.Model, cancellationToken: cancellationToken);
        var cfg = checkpoint.MoE;
        if (cfg.NumMoELayers == 0)
            throw new MoeCompressException(ErrorKind.Infeasible, $"{checkpoint.ConfigPath}: the model has no routed MoE layer to prune");
        var groups = Math.Max(1, cfg.NumGroups);
        var keep = PlanExpertCount(cfg, options);
        if (output is not null && string.Equals(output, checkpoint.Directory, StringComparison.Ordinal))
            throw new MoeCompressException(ErrorKind.Usage, $"--output {output}: is the input model; write the pruned model elsewhere");
        if (options.Profile.Profile is null || scorer.RequiresActivations)
            ModelEngine.EnsureSupported(checkpoint.Family, checkpoint.Config);

        var compressed = ResolvePropagation(options, scorer);
        if (options.Resume && !compressed)
            throw new MoeCompressException(ErrorKind.Usage,
                "--resume: only a prune with compressed propagation journals its layers; this one uses original propagation (--propagate original, --profile, --global or an activation-measuring method)");
        var notes = new List<string>();
        GlobalPruningSummary? global = null;
        IReadOnlyDictionary<int, (int Keep, IReadOnlyList<int> Removed)>? allocation = null;
        LayerPassJournal? journal = null;
        PruneDecisions decided;
        if (compressed)
            (decided, journal) = DecideSequentially(checkpoint, options, scorer, keep, output, notes, progress, cancellationToken);
        else
            (decided, keep, global, allocation) = DecideFromProfile(checkpoint, options, scorer, keep, notes, progress, cancellationToken);
        var (profile, scores, selections, protectedMap) = decided;
        var source = new ProfileSource(options.Profile.Profile is null ? null : Path.GetFullPath(options.Profile.Profile),
            profile.Data, profile.Tokens, profile.CreatedUtc);
        var decoderLayers = profile.Layers.Select(l => l.Layer).ToList();
        IReadOnlyCollection<int> ProtectedIn(int layer) => protectedMap.TryGetValue(layer, out var p) ? p : [];

        var layers = new List<PrunedLayer>();
        var plan = new SortedDictionary<int, IReadOnlyList<OutputExpert>>();
        foreach (var layer in decoderLayers)
        {
            var selection = selections.TryGetValue(layer, out var s) ? s
                : throw new MoeCompressException(ErrorKind.Internal, $"{scorer.Name} made no decision for layer {layer}");
            KeptExpertChooser.Verify(layer, cfg.NumExperts, selection.Kept, keep, groups, ProtectedIn(layer));
            MoEInvariants.CheckGroupBalance(cfg, layer, selection.Kept);
            var extra = allocation is null ? [] : allocation[layer].Removed;
            layers.Add(Describe(layer, false, scorer.Name, selection.Rule, scores.Of(layer), selection.Kept, ProtectedIn(layer), extra,
                selection.OutputError, allocation?[layer].Keep));
            plan[layer] = selection.Kept.Select(OutputExpert.Copy).ToList();
        }

        // MTP layers: no calibration statistics; same E' by a data-free proxy.
        var present = checkpoint.MtpLayersPresent.ToHashSet();
        var mtpLayers = cfg.MoELayerIndices(includeMtp: true).Where(cfg.IsMtpLayer).ToList();
        foreach (var layer in mtpLayers.Where(present.Contains))
        {
            var norms = RouterRowNorms.Of(checkpoint, layer);
            var kept = KeptExpertChooser.TopByScore(layer, norms, keep, groups, []);
            MoEInvariants.CheckGroupBalance(cfg, layer, kept);
            var rule = "highest router row L2 norms (data-free proxy)" + (groups > 1 ? $", {keep / groups} per group" : "");
            layers.Add(Describe(layer, true, RouterRowNorms.ScoreName, rule, norms, kept, [], [], null, null));
            plan[layer] = kept.Select(OutputExpert.Copy).ToList();
        }
        if (mtpLayers.Any(present.Contains))
            notes.Add($"MTP layer(s) {string.Join(", ", mtpLayers.Where(present.Contains))} have no calibration statistics (calibration runs the " +
                      $"decoder layers only): cut to the same {keep} experts by the L2 norm of their router rows, a data-free proxy");
        if (mtpLayers.Any(l => !present.Contains(l)))
            notes.Add($"MTP layer(s) {string.Join(", ", mtpLayers.Where(l => !present.Contains(l)))} are declared in config.json but not stored: nothing to cut");
        if (cfg.NumSharedExperts > 0)
            notes.Add("shared experts are kept unchanged");
        if (!options.AllowSuperExperts && protectedMap.Count > 0)
            notes.Add($"{protectedMap.Values.Sum(p => p.Count)} super expert(s) protected: {string.Join("; ", protectedMap.OrderBy(kv => kv.Key).Select(kv => $"layer {kv.Key}: {string.Join(", ", kv.Value)}"))}");

        var report = new PruneReport
        {
            ToolVersion = CalibrationProfile.CurrentToolVersion,
            Model = checkpoint.Directory,
            Family = checkpoint.Family.Name,
            Output = output,
            DryRun = options.DryRun,
            Method = scorer.Name,
            MethodDescription = scorer.Description,
            MethodIsDefault = options.Method is null,
            Global = options.Global,
            RequestedRatio = options.Ratio,
            RequestedKeep = options.Keep,
            InputExperts = cfg.NumExperts,
            OutputExperts = keep,
            TopK = cfg.TopK,
            Groups = groups,
            Profile = source,
            SuperExpertsProtected = !options.AllowSuperExperts,
            Layers = layers,
            GlobalSummary = global,
            Propagation = compressed ? Propagation.Compressed : Propagation.Original,
            Statistics = profile,
            Notes = notes,
        };
        if (options.DryRun)
            return report with { ElapsedSeconds = clock.Elapsed.TotalSeconds };

        var manifest = new JsonObject
        {
            ["options"] = OptionsJson(options, scorer.Name),
            ["prune"] = report.ToJsonObject(),
        };
        var surgery = ExpertSurgery.Write(checkpoint, new ExpertSurgeryPlan { Layers = plan, Operation = "prune" }, output!,
            new ExpertSurgeryOptions { Overwrite = options.Overwrite, MaxShardBytes = options.MaxShardBytes, ManifestProperties = manifest },
            progress, cancellationToken);
        journal?.Delete();
        return report with { Output = surgery.OutputDirectory, Surgery = surgery, ElapsedSeconds = clock.Elapsed.TotalSeconds };
    }

    /// <summary>Compressed propagation: one sequential pass decides each layer before measuring the next, journaled
    /// beside <paramref name="output"/> (none for a dry run).</summary>
    private static (PruneDecisions, LayerPassJournal?) DecideSequentially(ModelCheckpoint checkpoint, PruneOptions options, IExpertScorer scorer,
        int keep, string? output, List<string> notes, IProgress<string>? progress, CancellationToken ct)
    {
        var set = options.Profile.LoadTokens(checkpoint, progress, ct);
        LayerPassJournal? journal = null;
        if (output is not null && !options.DryRun)
            journal = LayerPassJournal.Open(output, "prune", LayerPassJournal.Fingerprint(set, CalibrationProfile.CurrentToolVersion,
                Calibrator.Sha256Hex(checkpoint.ConfigPath), scorer.Name, keep.ToString(CultureInfo.InvariantCulture),
                options.AllowSuperExperts.ToString(), options.Profile.MicroBatch.ToString(CultureInfo.InvariantCulture)), options.Resume, "--resume");
        progress?.Report($"sequential prune ({scorer.Name}, keep {keep} of {checkpoint.MoE.NumExperts}) over {checkpoint.Directory}: " +
                         $"{set.Count} x {set.SeqLen} = {(long)set.Count * set.SeqLen:N0} tokens, each layer decided before the next is measured (compressed propagation)");
        var decided = SequentialPrunePass.Run(checkpoint, set, scorer, keep, options.AllowSuperExperts,
            new StreamingOptions { MicroBatchTokens = options.Profile.MicroBatch }, journal, progress, ct);
        notes.Add("compressed propagation: each layer's statistics were measured on the outputs of the already-pruned layers before it; " +
                  "super experts by the profile rule over the layers measured so far");
        return (decided, journal);
    }

    /// <summary>Original propagation: the statistics of the original model (one calibration pass, or a saved profile),
    /// then every layer's decision; with <see cref="PruneOptions.Global"/> the ranking across layers fixes E'.</summary>
    private static (PruneDecisions, int Keep, GlobalPruningSummary?, IReadOnlyDictionary<int, (int Keep, IReadOnlyList<int> Removed)>?) DecideFromProfile(
        ModelCheckpoint checkpoint, PruneOptions options, IExpertScorer scorer, int keep, List<string> notes, IProgress<string>? progress, CancellationToken ct)
    {
        var cfg = checkpoint.MoE;
        var groups = Math.Max(1, cfg.NumGroups);
        var profile = ProfileProvider.LoadOrCollect(checkpoint, options.Profile, progress, ct);
        var decoderLayers = profile.Layers.Select(l => l.Layer).ToList();
        IReadOnlyDictionary<int, IReadOnlyCollection<int>> supers = options.AllowSuperExperts
            ? new Dictionary<int, IReadOnlyCollection<int>>()
            : profile.SuperExperts.Experts.GroupBy(s => s.Layer)
                .ToDictionary(g => g.Key, g => (IReadOnlyCollection<int>)g.Select(s => s.Expert).Order().ToList());
        IReadOnlyCollection<int> ProtectedIn(int layer) => supers.TryGetValue(layer, out var p) ? p : [];
        if (!options.Global)
            foreach (var layer in decoderLayers)
                KeptExpertChooser.CheckFeasible(layer, cfg.NumExperts, keep, groups, ProtectedIn(layer));

        CalibrationSet? tokens = null;
        if (scorer.RequiresActivations)
        {
            tokens = options.Profile.LoadTokens(checkpoint, progress, ct);
            notes.Add($"{scorer.Name} measured MoE block outputs on {tokens}");
        }
        var context = new ExpertScoringContext
        {
            Profile = profile,
            Checkpoint = checkpoint,
            Tokens = tokens,
            Streaming = new StreamingOptions { MicroBatchTokens = options.Profile.MicroBatch },
            Progress = progress,
        };
        progress?.Report($"scoring experts: {scorer.Name}");
        var scores = scorer.Score(context, ct);

        GlobalPruningSummary? global = null;
        IReadOnlyDictionary<int, (int Keep, IReadOnlyList<int> Removed)>? allocation = null;
        if (options.Global)
        {
            (keep, global, allocation) = PlanGlobal(cfg, options, scores, decoderLayers, ProtectedIn, supers);
            progress?.Report($"global ranking: per-layer counts [{string.Join(", ", global.LayerKeep.OrderBy(kv => kv.Key).Select(kv => kv.Value))}] → E' = {keep}");
        }

        progress?.Report($"choosing {keep} of {cfg.NumExperts} experts per layer: {scorer.Name}");
        var selections = scorer.SelectKept(context, scores,
            new KeepRequest { Keep = keep, Groups = groups, Protected = supers, Layers = decoderLayers }, ct);
        return (new PruneDecisions(profile, scores, selections, supers), keep, global, allocation);
    }

    /// <summary>The journal folder a compressed-propagation prune writing <paramref name="output"/> keeps beside it until it
    /// finishes (what <see cref="PruneOptions.Resume"/> continues).</summary>
    public static string JournalDirectory(string output) => LayerPassJournal.PathFor(output, "prune");

    /// <summary>True when <paramref name="options"/> prune with compressed propagation: one sequential pass that measures
    /// each layer after pruning the ones before it (see <see cref="PruneOptions.Propagate"/>).</summary>
    /// <exception cref="MoeCompressException">Usage: an unknown method, or compressed propagation asked for where it cannot be honoured.</exception>
    public static bool UsesCompressedPropagation(PruneOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return ResolvePropagation(options, ExpertScorers.Get(options.Method ?? DefaultMethod, new ExpertScorerOptions()));
    }

    /// <summary>True for compressed propagation (see <see cref="PruneOptions.Propagate"/>); an explicit
    /// <see cref="Propagation.Compressed"/> the options cannot honour is a usage error naming the option in the way.</summary>
    private static bool ResolvePropagation(PruneOptions options, IExpertScorer scorer)
    {
        string? obstacle = options.Profile.Profile is not null || options.Profile.Loaded is not null
                ? "--profile holds statistics of the original model; give --data to measure each layer after pruning the ones before it"
            : options.Global ? "--global ranks the experts of all layers together, so every layer must be measured before any is pruned"
            : scorer.RequiresActivations ? $"--method {scorer.Name} runs the model for its own search; use --propagate original"
            : null;
        if (options.Propagate == Propagation.Compressed && obstacle is not null)
            throw new MoeCompressException(ErrorKind.Usage, $"--propagate compressed: {obstacle}");
        return options.Propagate != Propagation.Original && obstacle is null;
    }

    /// <summary>
    /// The routed experts per MoE layer the pruning keeps (with <see cref="PruneOptions.Global"/>: the average it aims
    /// at; the equalised count is known only after scoring), checked against the options and the model's MoE invariants
    /// from its config alone — no weights read, nothing calibrated.
    /// </summary>
    /// <exception cref="MoeCompressException">Usage or Infeasible, as <see cref="Run"/> would throw before any work.</exception>
    public static int PlanExpertCount(MoEConfig cfg, PruneOptions options)
    {
        ArgumentNullException.ThrowIfNull(cfg);
        ArgumentNullException.ThrowIfNull(options);
        CheckCountOptions(options);
        var keep = ResolveUniformKeep(cfg, options, out var keepOption);
        var feasible = MoEInvariants.FeasibleCounts(cfg);
        if (!options.Global || feasible.Count > 0 && keep < feasible[0])
            MoEInvariants.CheckOutputCount(cfg, keep, keepOption); // with --global: an average below every loadable count cannot be met
        if (options.Global && !feasible.Any(c => c < cfg.NumExperts))
            throw new MoeCompressException(ErrorKind.Infeasible,
                $"--global: no expert count below {cfg.NumExperts} is loadable for this model (top-k {cfg.TopK}" +
                (cfg.NumGroups > 1 ? $", n_group {cfg.NumGroups}, topk_group {cfg.TopKGroups}" : "") + ")");
        return keep;
    }

    private static void CheckCountOptions(PruneOptions options)
    {
        if (options.Ratio is null == options.Keep is null)
            throw new MoeCompressException(ErrorKind.Usage, "give exactly one of --ratio (fraction of routed experts removed) and --keep (experts kept per layer)");
        if (options.Ratio is { } r && !(r > 0 && r < 1))
            throw new MoeCompressException(ErrorKind.Usage, $"--ratio {r.ToString(CultureInfo.InvariantCulture)}: must be between 0 and 1 (exclusive), the fraction of routed experts removed");
        if (options.Keep is < 1)
            throw new MoeCompressException(ErrorKind.Usage, $"--keep {options.Keep}: at least one expert must remain in every MoE layer");
        if (options.NaeeExhaustiveLimit < 0)
            throw new MoeCompressException(ErrorKind.Usage, $"--naee-exhaustive-limit {options.NaeeExhaustiveLimit}: must not be negative");
        if (options.MaxShardBytes <= 0)
            throw new MoeCompressException(ErrorKind.Usage, $"--max-shard-size {options.MaxShardBytes}: must be positive");
    }

    /// <summary>Full output path (null for a dry run); refuses an existing output without overwrite.</summary>
    private static string? CheckOutputPath(PruneOptions options)
    {
        if (options.DryRun) return options.Output is null ? null : Path.GetFullPath(options.Output);
        if (string.IsNullOrWhiteSpace(options.Output))
            throw new MoeCompressException(ErrorKind.Usage, "--output is required (or pass --dry-run to see the plan)");
        var full = Path.GetFullPath(options.Output);
        if (File.Exists(full))
            throw new MoeCompressException(ErrorKind.Io, $"{full}: exists and is a file");
        if (Directory.Exists(full) && !options.Overwrite)
            throw new MoeCompressException(ErrorKind.Io, $"{full}: output directory exists; pass --overwrite to replace it");
        return full;
    }

    /// <summary>E' of uniform pruning (with --global: the average count the request implies).</summary>
    private static int ResolveUniformKeep(MoEConfig cfg, PruneOptions options, out string option)
    {
        if (options.Keep is { } k)
        {
            option = "--keep";
            return k;
        }
        var ratio = options.Ratio!.Value;
        var removed = (int)Math.Round(ratio * cfg.NumExperts, MidpointRounding.AwayFromZero);
        option = string.Create(CultureInfo.InvariantCulture, $"--ratio {ratio} (E' = {cfg.NumExperts} − round({ratio}·{cfg.NumExperts}))");
        if (removed == 0 && !options.Global)
            throw new MoeCompressException(ErrorKind.Usage,
                string.Create(CultureInfo.InvariantCulture, $"--ratio {ratio}: removes no expert of {cfg.NumExperts} per layer; use a larger ratio"));
        return cfg.NumExperts - removed;
    }

    private static (int Keep, GlobalPruningSummary Summary, IReadOnlyDictionary<int, (int Keep, IReadOnlyList<int> Removed)> Allocation) PlanGlobal(
        MoEConfig cfg, PruneOptions options, ExpertScores scores, IReadOnlyList<int> layers, Func<int, IReadOnlyCollection<int>> protectedIn,
        IReadOnlyDictionary<int, IReadOnlyCollection<int>> protectedMap)
    {
        var e = cfg.NumExperts;
        var groups = Math.Max(1, cfg.NumGroups);
        var total = e * layers.Count;
        var requested = options.Keep is { } k
            ? (e - k) * layers.Count
            : (int)Math.Round(options.Ratio!.Value * total, MidpointRounding.AwayFromZero);
        if (requested <= 0)
            throw new MoeCompressException(ErrorKind.Usage,
                $"--global: the request removes no expert of the {total} routed experts in {layers.Count} MoE layers");
        var feasible = MoEInvariants.FeasibleCounts(cfg);
        var normalized = layers.ToDictionary(l => l, scores.Normalized);
        var allocation = GlobalExpertBudget.Allocate(normalized, requested, feasible[0], protectedMap);
        var maxKeep = allocation.Values.Max(a => a.Keep);
        bool Fits(int count) => layers.All(l =>
        {
            var p = protectedIn(l);
            return p.Count <= count && (groups == 1 || p.GroupBy(x => KeptExpertChooser.GroupOf(x, e, groups)).All(g => g.Count() <= count / groups));
        });
        var outputExperts = feasible.FirstOrDefault(c => c >= maxKeep && Fits(c));
        if (outputExperts == 0 || outputExperts >= e)
        {
            var widest = allocation.OrderByDescending(a => a.Value.Keep).ThenBy(a => a.Key).First();
            throw new MoeCompressException(ErrorKind.Infeasible,
                $"--global: the global ranking keeps {widest.Value.Keep} of {e} experts in layer {widest.Key}, so equalising the layers " +
                $"to one loadable count removes nothing; prune uniformly (without --global) or remove more");
        }
        var summary = new GlobalPruningSummary(requested, allocation.Values.Sum(a => a.Removed.Count), total,
            allocation.ToDictionary(a => a.Key, a => a.Value.Keep), outputExperts,
            "s_i / Σ_j s_j, shifted by the layer minimum first when a score is negative");
        return (outputExperts, summary, allocation);
    }

    private static PrunedLayer Describe(int layer, bool isMtp, string scoreName, string rule, IReadOnlyList<double> scores,
        IReadOnlyList<int> kept, IReadOnlyCollection<int> protectedExperts, IReadOnlyList<int> globallyRemoved, double? outputError, int? globalKeep)
    {
        var keptSet = kept.ToHashSet();
        var protectedSet = protectedExperts.ToHashSet();
        return new PrunedLayer
        {
            Layer = layer,
            IsMtp = isMtp,
            ScoreName = scoreName,
            Rule = rule,
            Kept = kept.Select((o, n) => new PrunedExpert(o, n, scores[o], protectedSet.Contains(o), globallyRemoved.Contains(o))).ToList(),
            Removed = Enumerable.Range(0, scores.Count).Where(i => !keptSet.Contains(i))
                .Select(i => new PrunedExpert(i, null, scores[i])).ToList(),
            Protected = protectedSet.Order().ToList(),
            OutputError = outputError,
            GlobalKeep = globalKeep,
            ExtraKept = globalKeep is { } g ? kept.Count - g : 0,
        };
    }

    private static JsonObject OptionsJson(PruneOptions o, string method) => new()
    {
        ["model"] = Path.GetFullPath(o.Model),
        ["output"] = o.Output is null ? null : Path.GetFullPath(o.Output),
        ["ratio"] = o.Ratio,
        ["keep"] = o.Keep,
        ["method"] = method,
        ["global"] = o.Global,
        ["allow_super_experts"] = o.AllowSuperExperts,
        ["profile"] = o.Profile.Profile is null ? null : Path.GetFullPath(o.Profile.Profile),
        ["data"] = o.Profile.Data is null ? null : Path.GetFullPath(o.Profile.Data),
        ["samples"] = o.Profile.Samples,
        ["seq_len"] = o.Profile.SeqLen,
        ["seed"] = o.Profile.Seed,
        ["naee_exhaustive_limit"] = o.NaeeExhaustiveLimit,
    };
}
