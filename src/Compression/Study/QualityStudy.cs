using MoECompress.Formats.Families;
using MoECompress.Compression.Data;
using MoECompress.Compression.Substitution;
using System.Diagnostics;
using MoECompress.Compression.Calibration;
using MoECompress.Compression.Evaluation;
using MoECompress.Compression.Importance;
using MoECompress.Compression.Merging;
using MoECompress.Compression.Pruning;
using MoECompress.Compression.Quantization;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Quantized;

namespace MoECompress.Compression.Study;

/// <summary>
/// The one run behind the README's quality tables: calibrates a general profile (bundled calibration set) and a task
/// profile (one domain's training text), then prunes with every method and merges with both methods at each reduction,
/// prunes task-adaptively, and quantizes uniformly and with the allocated mixed precision; every output is evaluated
/// against the original on each held-out domain (perplexity, KL, top-1 agreement).
/// </summary>
public static class QualityStudy
{
    /// <summary>Runs the study; the report is also written to the output folder as quality-report.json/.md.</summary>
    public static QualityStudyReport Run(QualityStudyOptions options, IProgress<string>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        var clock = Stopwatch.StartNew();
        var model = Path.GetFullPath(options.Model ?? BundledData.LocateDemoModel()
            ?? throw new MoeCompressException(ErrorKind.Usage, $"no model given and no bundled demo model found ({BundledData.Searched(BundledData.DemoModel)})"));
        var heldOut = BundledData.LocateHeldOutText()
            ?? throw new MoeCompressException(ErrorKind.Usage, $"no bundled held-out text found ({BundledData.Searched(BundledData.HeldOutText)})");
        var calibrationSet = BundledData.LocateCalibrationSet()
            ?? throw new MoeCompressException(ErrorKind.Usage, $"no bundled calibration set found ({BundledData.Searched(BundledData.CalibrationSet)})");
        var taskText = Path.Combine(Path.GetDirectoryName(calibrationSet)!, "train", options.TaskDomain + ".txt");
        var root = Path.GetFullPath(options.Output);
        if (Directory.Exists(root) || File.Exists(root))
            throw new MoeCompressException(ErrorKind.Io, $"{root}: already exists; the study writes a new folder");
        Directory.CreateDirectory(root);
        var domains = PerDomainEvaluation.DomainFiles(heldOut);

        progress?.Report("calibrating the general profile");
        var general = Path.Combine(root, "profile-general");
        Calibrator.Run(new CalibrateOptions { Model = model, Out = general, Samples = options.Samples, SeqLen = options.SeqLen }, progress, cancellationToken);
        var generalRequest = new ProfileRequest { Profile = general, Samples = options.Samples, SeqLen = options.SeqLen };

        var rows = new List<QualityStudyRow>();
        var original = Evaluate(model, null, domains, options, progress, cancellationToken);
        rows.Add(new QualityStudyRow("original", "original", "-", PerDomainEvaluation.TensorBytes(model), original, 0));

        QualityStudyRow Step(string section, string name, string setting, Func<string, string> compress)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var dir = Path.Combine(root, $"{section}-{name}-{setting}".Replace(' ', '_').Replace('/', '_'));
            progress?.Report($"== {section}: {name} {setting}");
            var sw = Stopwatch.StartNew();
            var detail = compress(dir);
            double seconds = sw.Elapsed.TotalSeconds;
            var quality = Evaluate(dir, model, domains, options, progress, cancellationToken);
            var row = new QualityStudyRow(section, name, setting, PerDomainEvaluation.TensorBytes(dir), quality, seconds, detail);
            if (!options.KeepCheckpoints) Directory.Delete(dir, recursive: true);
            progress?.Report($"   {name} {setting}: PPL {row.Perplexity:0.00} (base {row.BasePerplexity:0.00}), KL {row.MeanKl:0.0000}");
            return row;
        }
        string Pct(double r) => $"{r * 100:0}%";

        if (options.Sections.Contains("prune"))
            foreach (var ratio in options.Ratios)
                foreach (var method in ExpertScorers.Names)
                    rows.Add(Step("prune", method, Pct(ratio), dir =>
                    {
                        var r = Pruner.Run(new PruneOptions { Model = model, Output = dir, Ratio = ratio, Method = method, Profile = generalRequest }, progress, cancellationToken);
                        return $"{r.InputExperts}→{r.OutputExperts} experts";
                    }));

        if (options.Sections.Contains("merge"))
            foreach (var ratio in options.Ratios)
                foreach (var (name, settings) in new (string, Func<MergeOptions, MergeOptions>)[]
                         {
                             ("average (default)", o => o),
                             ("subspace, energy 0.95", o => o with { Method = MergeMethod.Subspace, Energy = 0.95 }),
                             ("plain average (no alignment, unbalanced clusters)", o => o with { Align = false, MaxClusterSize = 0 }),
                         })
                    rows.Add(Step("merge", name, Pct(ratio), dir =>
                    {
                        var r = Merger.Run(settings(new MergeOptions { Model = model, Output = dir, Ratio = ratio, Profile = generalRequest }), progress, cancellationToken);
                        var rules = r.Layers.Select(l => l.RouterRow.ToString().ToLowerInvariant()).Distinct();
                        return $"{r.Method.ToString().ToLowerInvariant()}, {r.Clustering.ToString().ToLowerInvariant()} clusters, router rows: {string.Join("/", rules)}";
                    }));

        if (options.Sections.Contains("task"))
        {
            if (!File.Exists(taskText))
                throw new MoeCompressException(ErrorKind.Usage, $"{taskText}: task text not found (--task-domain names a file of calibration/train)");
            progress?.Report($"calibrating the task profile on {options.TaskDomain}");
            var task = Path.Combine(root, "profile-" + options.TaskDomain);
            Calibrator.Run(new CalibrateOptions { Model = model, Data = taskText, Out = task, Samples = options.Samples, SeqLen = options.SeqLen }, progress, cancellationToken);
            var ratio = options.Ratios.Max();
            foreach (var (label, profile) in new[] { ("general profile", general), ($"{options.TaskDomain} profile", task) })
                rows.Add(Step("task", $"prune {Pruner.DefaultMethod}, {label}", Pct(ratio), dir =>
                {
                    Pruner.Run(new PruneOptions { Model = model, Output = dir, Ratio = ratio, Profile = generalRequest with { Profile = profile } }, progress, cancellationToken);
                    return profile;
                }));
        }

        if (options.Sections.Contains("quantize"))
        {
            QuantizeOptions Q(string dir) => new()
            {
                Model = model, Output = dir, GroupSize = options.GroupSize, Format = QuantizedFormat.Gptq, Profile = generalRequest,
            };
            string Alloc(QuantizeReport r) => $"{r.AverageBits:0.###} avg bits";
            foreach (var method in new[] { QuantizeMethod.Rtn, QuantizeMethod.Gptq })
                foreach (var bits in new[] { 2, 3, 4 })
                    rows.Add(Step("quantize", $"uniform {method.ToString().ToUpperInvariant()}", $"{bits} bits", dir =>
                        Alloc(Quantizer.Run(Q(dir) with { Method = method, Bits = bits, Uniform = true }, progress, cancellationToken))));
            foreach (var bits in new[] { 2.5, 3.0 })
                foreach (var granularity in new[] { BitAllocationGranularity.Expert, BitAllocationGranularity.Layer })
                    rows.Add(Step("quantize", $"mixed GPTQ, per {granularity.ToString().ToLowerInvariant()}", $"{bits:0.0} bits", dir =>
                        Alloc(Quantizer.Run(Q(dir) with { Method = QuantizeMethod.Gptq, Bits = bits, Granularity = granularity }, progress, cancellationToken))));
        }

        if (options.Sections.Contains("propagation"))
        {
            // The sequential GPTQ pass feeds layer l+1 with the quantized (default) or the original layer l's outputs.
            QuantizeOptions Q(string dir, Propagation p) => new()
            {
                Model = model, Output = dir, GroupSize = options.GroupSize, Format = QuantizedFormat.Gptq, Profile = generalRequest,
                Method = QuantizeMethod.Gptq, Propagate = p,
            };
            foreach (var p in new[] { Propagation.Compressed, Propagation.Original })
            {
                var name = p.ToString().ToLowerInvariant();
                rows.Add(Step("propagation", $"uniform GPTQ, {name}", "3 bits", dir =>
                    $"{Quantizer.Run(Q(dir, p) with { Bits = 3, Uniform = true }, progress, cancellationToken).AverageBits:0.###} avg bits"));
                foreach (var granularity in new[] { BitAllocationGranularity.Expert, BitAllocationGranularity.Layer })
                    rows.Add(Step("propagation", $"mixed GPTQ per {granularity.ToString().ToLowerInvariant()}, {name}", "2.5 bits", dir =>
                        $"{Quantizer.Run(Q(dir, p) with { Bits = 2.5, Granularity = granularity }, progress, cancellationToken).AverageBits:0.###} avg bits"));
            }
            // Pruning and merging measure each layer on the compressed or the original layers before it, on the tokens of
            // the general profile (bundled set, same samples, length and seed).
            var tokens = generalRequest with { Profile = null };
            foreach (var (name, run) in new (string, Func<string, double, Propagation, string>)[]
                     {
                         ($"prune {Pruner.DefaultMethod}", (dir, ratio, p) =>
                         {
                             var r = Pruner.Run(new PruneOptions { Model = model, Output = dir, Ratio = ratio, Profile = tokens, Propagate = p }, progress, cancellationToken);
                             return $"{r.InputExperts}→{r.OutputExperts} experts";
                         }),
                         ("merge average", (dir, ratio, p) =>
                         {
                             var r = Merger.Run(new MergeOptions { Model = model, Output = dir, Ratio = ratio, Profile = tokens, Propagate = p }, progress, cancellationToken);
                             return $"{r.InputExperts}→{r.OutputExperts} experts, router rows: {string.Join("/", r.Layers.Select(l => l.RouterRow.ToString().ToLowerInvariant()).Distinct())}";
                         }),
                     })
                foreach (var ratio in options.Ratios)
                    foreach (var p in new[] { Propagation.Compressed, Propagation.Original })
                        rows.Add(Step("propagation", $"{name}, {p.ToString().ToLowerInvariant()}", Pct(ratio), dir => run(dir, ratio, p)));
        }

        if (options.Sections.Contains("substitute"))
        {
            // Compressed experts (N = k/2 of each token's top-k replaced by trained vectors) against simply computing
            // k − N experts per token (reduced top-k), on the tokens of the general profile.
            int topK;
            using (var checkpoint = ModelCheckpoint.Open(model, cancellationToken: cancellationToken)) topK = checkpoint.MoE.TopK;
            var aux = Math.Max(1, topK / 2);
            foreach (var (name, export) in new[] { ("compressed experts", SubstituteExport.CompressedExperts), ("reduced top-k", SubstituteExport.ReducedTopK) })
                rows.Add(Step("substitute", name, $"N = {aux} of top-{topK}", dir =>
                {
                    var r = Substituter.Run(new SubstituteOptions
                    {
                        Model = model, Output = dir, Aux = aux, Export = export,
                        DataOptions = new CalibrationDataOptions { Samples = options.Samples, SeqLen = options.SeqLen },
                    }, progress, cancellationToken);
                    return $"{topK - aux} of {topK} experts computed per token";
                }));
        }

        var report = new QualityStudyReport(model, options, domains.Select(Path.GetFileNameWithoutExtension).ToList()!, rows, clock.Elapsed.TotalSeconds);
        File.WriteAllText(Path.Combine(root, "quality-report.json"), report.ToJson());
        File.WriteAllText(Path.Combine(root, "quality-report.md"), report.ToMarkdown());
        return report;
    }

    private static List<DomainQuality> Evaluate(string model, string? baseModel, IReadOnlyList<string> domains, QualityStudyOptions options,
        IProgress<string>? progress, CancellationToken cancellationToken)
    {
        var result = PerDomainEvaluation.Run(model, baseModel, domains, options.EvalTokensPerDomain, cancellationToken: cancellationToken)
            .Select(d => new DomainQuality(d.Domain, d.Report.Metrics.Perplexity, d.Report.Metrics.BasePerplexity ?? d.Report.Metrics.Perplexity,
                d.Report.Metrics.MeanKl ?? 0, d.Report.Metrics.Top1Agreement ?? 1, d.Report.Metrics.TokensScored))
            .ToList();
        progress?.Report($"   evaluated {model}: " + string.Join(", ", result.Select(d => $"{d.Domain} {d.Perplexity:0.0}")));
        return result;
    }
}
