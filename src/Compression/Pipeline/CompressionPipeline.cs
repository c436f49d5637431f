using System.Diagnostics;
using System.Text.Json;
using System.Text.RegularExpressions;
using MoECompress.Compression.Calibration;
using MoECompress.Compression.Data;
using MoECompress.Compression.Evaluation;
using MoECompress.Compression.Merging;
using MoECompress.Compression.Pruning;
using MoECompress.Compression.Quantization;
using MoECompress.Compression.Reporting;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Families;

namespace MoECompress.Compression.Pipeline;

/// <summary>
/// Runs a <see cref="CompressionRecipe"/> on a model (the <c>moe-compress compress</c> command): validates every step
/// against the model's config before any work, draws the calibration tokens once, runs the steps in order — each on the
/// previous step's output, in a work folder beside <see cref="Output"/> — and writes one checkpoint with one report
/// covering every step and, when the recipe asks, the end-to-end quality against the original.
/// </summary>
/// <remarks>
/// Calibration: the tokens are drawn once. A prune or merge step with compressed propagation (the default where possible) measures
/// its statistics in its own sequential pass; otherwise the first prune/merge step reads the router statistics of one calibration
/// pass over the original; a prune/merge step after another one re-derives them by a calibration pass over the changed
/// model (its experts and routing differ); quantize collects the statistics of the model it quantizes inside its own
/// sensitivity pass, so prune → quantize makes exactly one calibration pass. The report counts the passes.
/// The output appears only when everything succeeded (the final checkpoint is renamed into place); the input is never
/// modified; the work folder is deleted on success and on failure.
/// </remarks>
public sealed class CompressionPipeline
{
    /// <summary>The input checkpoint folder (never modified).</summary>
    public required string Model { get; init; }
    /// <summary>The output checkpoint folder; not needed for <see cref="Plan"/>.</summary>
    public string? Output { get; init; }
    /// <summary>What to do.</summary>
    public required CompressionRecipe Recipe { get; init; }
    /// <summary>Replace an existing output folder.</summary>
    public bool Overwrite { get; init; }

    /// <summary>Report file names written into the output.</summary>
    public const string ReportJson = "compression-report.json", ReportMarkdown = "compression-report.md";

    /// <summary>
    /// Checks the recipe against the model from its config and headers only (no weights read, nothing calibrated):
    /// every step's options, expert counts through the steps against the MoE invariants (top-k, groups). Seconds.
    /// </summary>
    /// <exception cref="MoeCompressException">The first problem, naming the step and key.</exception>
    public CompressionPlan Plan(CancellationToken cancellationToken = default)
    {
        Recipe.Validate();
        using var checkpoint = ModelCheckpoint.Open(Model, cancellationToken: cancellationToken);
        var moe = checkpoint.MoE;
        if (moe.NumMoELayers == 0)
            throw new MoeCompressException(ErrorKind.Infeasible, $"{checkpoint.ConfigPath}: the model has no routed MoE layer to compress");
        var request = CalibrationRequest(null, null);
        var planned = new List<CompressionPlan.Step>();
        var experts = moe.NumExperts;
        var passes = 0;
        for (var i = 0; i < Recipe.Steps.Count; i++)
        {
            var step = Recipe.Steps[i];
            var current = moe with { NumExperts = experts };
            string source;
            var after = experts;
            Named(i, step, () =>
            {
                switch (step)
                {
                    case PruneStep p:
                        Importance.ExpertScorers.Get(p.Method ?? Pruner.DefaultMethod, new Importance.ExpertScorerOptions());
                        after = Pruner.PlanExpertCount(current, p.ToOptions(Model, null, request, dryRun: true));
                        break;
                    case MergeStep m:
                        after = Merger.PlanExpertCount(current, m.ToOptions(Model, null, request, dryRun: true));
                        break;
                    case QuantizeStep q:
                        var options = q.ToOptions(Model, null, request, dryRun: true);
                        options.Validate();
                        // Pruning and merging keep the tensor layout, so the input tells whether the format can hold the
                        // experts (fused or already-quantized experts, --layers out of range).
                        QuantizePlan.Build(checkpoint, options);
                        break;
                    default:
                        throw new MoeCompressException(ErrorKind.Usage, $"unknown step type {step.GetType().Name}");
                }
            });
            if (step is QuantizeStep) source = "collected in quantize's own sensitivity pass (no separate calibration pass)";
            else if (Sequential(step))
            {
                passes++;
                source = $"calibration pass {passes}: {step.Kind}'s own sequential pass (compressed propagation: each layer measured after compressing the ones before it)";
            }
            else
            {
                passes++;
                source = i == 0 ? $"calibration pass {passes}, over the original model"
                    : $"calibration pass {passes}, over the output of steps[{i - 1}] (its experts changed)";
            }
            planned.Add(new CompressionPlan.Step(i, step, experts, after, source));
            experts = after;
        }
        return new CompressionPlan(checkpoint.Directory, checkpoint.Family.Name, moe.NumMoELayers, moe.NumExperts, moe.TopK, Recipe, planned, passes);
    }

    /// <summary>Runs the recipe; see the class remarks.</summary>
    /// <param name="progress">Structured progress: one update with <see cref="ProgressUpdate.Step"/> per stage (calibration,
    /// each step, evaluation), and each stage's own updates (layers, tokens) in between.</param>
    /// <param name="cancellationToken">Stops between layers; the output is not created.</param>
    public Task<CompressionPipelineReport> RunAsync(IProgress<ProgressUpdate>? progress = null, CancellationToken cancellationToken = default) =>
        Task.Run(() => Run(progress, cancellationToken), cancellationToken);

    private CompressionPipelineReport Run(IProgress<ProgressUpdate>? progress, CancellationToken ct)
    {
        var clock = Stopwatch.StartNew();
        var plan = Plan(ct);
        if (string.IsNullOrWhiteSpace(Output)) throw new MoeCompressException(ErrorKind.Usage, "out: give the output folder (or plan only, --dry-run)");
        var output = Path.TrimEndingDirectorySeparator(Path.GetFullPath(Output));
        if (string.Equals(output, plan.Model, StringComparison.Ordinal))
            throw new MoeCompressException(ErrorKind.Usage, $"{output}: is the input model; write the compressed model elsewhere");
        if (File.Exists(output)) throw new MoeCompressException(ErrorKind.Io, $"{output}: exists and is a file");
        if (Directory.Exists(output) && !Overwrite)
            throw new MoeCompressException(ErrorKind.Io, $"{output}: already exists (choose another output or allow --overwrite)");
        var parent = Path.GetDirectoryName(output)!;
        Directory.CreateDirectory(parent);
        var work = Path.Combine(parent, $".{Path.GetFileName(output)}.compress-{Guid.NewGuid().ToString("N")[..10]}");
        Directory.CreateDirectory(work);
        var stages = 1 + Recipe.Steps.Count + (Recipe.Evaluate is null ? 0 : 1);
        var stage = 0;
        var sink = new StageProgress(progress);
        void Stage(string name, string what)
        {
            sink.Stage = name;
            progress?.Report(new ProgressUpdate(name, $"step {++stage}/{stages}: {what}") { Step = stage, Steps = stages });
        }
        try
        {
            Stage("calibrate", "draw the calibration tokens" + (Recipe.Steps[0].ChangesExperts && !Sequential(Recipe.Steps[0]) ? " and run the calibration pass over the original" : ""));
            CalibrationSet set;
            CalibrationProfile? profile = null, original = null;
            var passes = 0;
            using (var checkpoint = ModelCheckpoint.Open(Model, cancellationToken: ct))
            {
                set = CalibrationPass.LoadTokens(checkpoint, Recipe.Calibration.Data, new CalibrationDataOptions
                {
                    Samples = Recipe.Calibration.Samples, SeqLen = Recipe.Calibration.SeqLen, Seed = Recipe.Calibration.Seed,
                }, sink, ct);
                if (Recipe.Steps[0].ChangesExperts && !Sequential(Recipe.Steps[0]))
                {
                    original = profile = ProfileProvider.LoadOrCollect(checkpoint, CalibrationRequest(set, null), sink, ct);
                    passes++;
                }
            }

            var results = new List<CompressionPipelineReport.StepResult>();
            var input = Model;
            for (var i = 0; i < Recipe.Steps.Count; i++)
            {
                ct.ThrowIfCancellationRequested();
                var step = Recipe.Steps[i];
                var last = i == Recipe.Steps.Count - 1;
                var stepOutput = Path.Combine(work, last ? "final" : $"step{i}-{step.Kind}");
                Stage(step.Kind, $"steps[{i}] {step.Kind} ({plan.Steps[i].Describe()})");
                if (step.ChangesExperts && profile is null && !Sequential(step))
                {
                    using var checkpoint = ModelCheckpoint.Open(input, cancellationToken: ct);
                    sink.Report($"re-deriving router statistics: steps[{i - 1}] changed the experts");
                    profile = ProfileProvider.LoadOrCollect(checkpoint, CalibrationRequest(set, null), sink, ct);
                    passes++;
                }
                var request = CalibrationRequest(set, step is QuantizeStep ? null : profile);
                var watch = Stopwatch.StartNew();
                object report = step switch
                {
                    PruneStep p => Pruner.Run(p.ToOptions(input, stepOutput, request), sink, ct),
                    MergeStep m => Merger.Run(m.ToOptions(input, stepOutput, request), sink, ct),
                    QuantizeStep q => Quantizer.Run(q.ToOptions(input, stepOutput, request), sink, ct),
                    _ => throw new InvalidOperationException(step.GetType().Name),
                };
                results.Add(new CompressionPipelineReport.StepResult(i, step, report, watch.Elapsed.TotalSeconds));
                var statistics = report switch
                {
                    PruneReport { Propagation: Propagation.Compressed } pr => pr.Statistics,
                    MergeReport { Propagation: Propagation.Compressed } mr => mr.Statistics,
                    _ => null,
                };
                if (statistics is not null)
                {
                    passes++;
                    if (i == 0) original = statistics; // usage as the decisions saw it
                }
                if (step.ChangesExperts) profile = null;
                if (i > 0) Directory.Delete(input, recursive: true); // an intermediate checkpoint, no longer needed
                input = stepOutput;
            }

            EvaluationReport? evaluation = null;
            if (Recipe.Evaluate is { } ev)
            {
                Stage("evaluate", "evaluate the output against the original on held-out text");
                evaluation = Evaluator.Run(new EvaluateOptions { Model = input, Base = Model, Data = ev.Data, MaxTokens = ev.Tokens }, sink, ct);
            }

            var result = new CompressionPipelineReport
            {
                Model = plan.Model, Output = output, Plan = plan, Steps = results, Evaluation = evaluation, CalibrationPasses = passes,
                CalibrationTokens = (long)set.Count * set.SeqLen, OriginalUsage = original, Seconds = clock.Elapsed.TotalSeconds,
            };
            ReportFiles(result, input);
            ct.ThrowIfCancellationRequested();
            if (Directory.Exists(output)) Directory.Delete(output, recursive: true);
            Directory.Move(input, output);
            progress?.Report(new ProgressUpdate("done", $"wrote {output}"));
            return result;
        }
        finally
        {
            try
            {
                if (Directory.Exists(work)) Directory.Delete(work, recursive: true);
            }
            catch (IOException)
            {
                // best effort: a leftover work folder is named by its prefix and holds no part of the output
            }
        }
    }

    private static void ReportFiles(CompressionPipelineReport report, string folder)
    {
        File.WriteAllText(Path.Combine(folder, ReportJson), report.ToJsonObject().ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
        File.WriteAllText(Path.Combine(folder, ReportMarkdown), report.ToMarkdown());
        report.ToHtml().Write(Path.Combine(folder, HtmlReport.FileName));
    }

    /// <summary>A prune or merge step that measures its own statistics in a sequential pass (compressed propagation).</summary>
    private bool Sequential(CompressionStep step) => step switch
    {
        PruneStep p => Pruner.UsesCompressedPropagation(p.ToOptions(Model, null, CalibrationRequest(null, null), dryRun: true)),
        MergeStep m => Merger.UsesCompressedPropagation(m.ToOptions(Model, null, CalibrationRequest(null, null), dryRun: true)),
        _ => false,
    };

    private ProfileRequest CalibrationRequest(CalibrationSet? set, CalibrationProfile? profile) => new()
    {
        Data = Recipe.Calibration.Data, Samples = Recipe.Calibration.Samples, SeqLen = Recipe.Calibration.SeqLen,
        Seed = Recipe.Calibration.Seed, Tokens = set, Loaded = profile,
    };

    /// <summary>Runs a step's checks, prefixing an error with the step and turning option names into recipe keys.</summary>
    private static void Named(int index, CompressionStep step, Action check)
    {
        try
        {
            check();
        }
        catch (MoeCompressException e)
        {
            var message = Regex.Replace(e.Message, "--([a-z][a-z-]*)", m => m.Groups[1].Value.Replace('-', '_'));
            throw new MoeCompressException(e.Kind, $"recipe steps[{index}] ({step.Kind}): {message}");
        }
    }

    /// <summary>Forwards a step's progress to the pipeline's sink: plain messages as updates of the current stage.</summary>
    private sealed class StageProgress(IProgress<ProgressUpdate>? target) : IProgress<string>, IProgress<ProgressUpdate>
    {
        public string Stage { get; set; } = "compress";
        public void Report(string value) => target?.Report(new ProgressUpdate(Stage, value));
        public void Report(ProgressUpdate value) => target?.Report(value with { Step = null, Steps = null });
    }
}
