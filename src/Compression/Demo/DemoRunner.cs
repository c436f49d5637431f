using System.Diagnostics;
using MoECompress.Compression.Calibration;
using MoECompress.Compression.Evaluation;
using MoECompress.Compression.Merging;
using MoECompress.Compression.Pruning;
using MoECompress.Compression.Quantization;
using MoECompress.Compression.Reporting;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Families;

namespace MoECompress.Compression.Demo;

/// <summary>
/// The README's main job on the bundled demo model: calibrate it on the bundled calibration set, then measure held-out
/// perplexity on each bundled domain; then prune, merge and quantize it with the default settings (25% fewer experts;
/// 3 bits on average, mixed precision, GPTQ) and compare each output with the original on the same text.
/// </summary>
public static class DemoRunner
{
    public static Task<DemoReport> RunAsync(DemoOptions options, IProgress<string>? progress = null, CancellationToken cancellationToken = default) =>
        Task.Run(() => Run(options, progress, cancellationToken), cancellationToken);

    public static DemoReport Run(DemoOptions options, IProgress<string>? progress = null, CancellationToken cancellationToken = default)
    {
        var clock = Stopwatch.StartNew();
        var model = options.Model ?? BundledData.LocateDemoModel()
            ?? throw new MoeCompressException(ErrorKind.Usage, $"no model given and no bundled demo model found ({BundledData.Searched(BundledData.DemoModel)})");
        var heldOut = BundledData.LocateHeldOutText()
            ?? throw new MoeCompressException(ErrorKind.Usage, $"no bundled held-out text found ({BundledData.Searched(BundledData.HeldOutText)})");

        using (ModelCheckpoint.Open(model)) { }   // a missing or broken model fails here, before the first step is announced
        string profileDir = options.ProfileOut ?? Path.Combine(Path.GetTempPath(), "moe-compress-demo-" + Guid.NewGuid().ToString("N")[..10]);
        int steps = options.Compress ? 8 : 2, step = 0;
        void Step(string stage, string what) =>
            progress.ReportUpdate(new ProgressUpdate(stage, $"step {++step}/{steps}: {what}") { Step = step, Steps = steps });
        try
        {
            Step("calibrate", "calibrate on the bundled calibration set");
            var calibration = Calibrator.Run(new CalibrateOptions
            {
                Model = model, Samples = options.Samples, SeqLen = options.SeqLen, Out = profileDir, Overwrite = options.ProfileOut is null,
            }, progress, cancellationToken);

            var domainFiles = PerDomainEvaluation.DomainFiles(heldOut);
            Step("evaluate", "evaluate the original on each held-out domain");
            var domains = PerDomainEvaluation.Run(model, null, domainFiles, options.MaxTokensPerDomain, options.Context, progress, cancellationToken);

            var compressed = new List<DemoCompressedModel>();
            PruneReport? prune = null;
            MergeReport? merge = null;
            QuantizeReport? quantize = null;
            CalibrationProfile? prunedUsage = null;
            if (options.Compress)
            {
                var outRoot = options.OutputDir ?? Path.Combine(Path.GetTempPath(), "moe-compress-demo-out-" + Guid.NewGuid().ToString("N")[..10]);
                if (options.OutputDir is not null && Directory.Exists(outRoot) && Directory.EnumerateFileSystemEntries(outRoot).Any())
                    throw new MoeCompressException(ErrorKind.Io, $"{Path.GetFullPath(outRoot)}: output folder exists and is not empty");
                var request = new ProfileRequest { Profile = profileDir, Samples = options.Samples, SeqLen = options.SeqLen };
                try
                {
                    Step("prune", "prune 25% of the experts, then calibrate the pruned model");
                    var pruned = Path.Combine(outRoot, "pruned");
                    prune = Pruner.Run(new PruneOptions { Model = model, Output = pruned, Ratio = 0.25, Profile = request }, progress, cancellationToken);
                    prunedUsage = Calibrator.Run(new CalibrateOptions
                    {
                        Model = pruned, Samples = options.Samples, SeqLen = options.SeqLen, Out = Path.Combine(outRoot, "pruned-usage-profile"),
                        Overwrite = true,
                    }, progress, cancellationToken).Profile;
                    Directory.Delete(Path.Combine(outRoot, "pruned-usage-profile"), recursive: true);
                    compressed.Add(Compressed("pruned", $"prune {prune.Method}, {prune.InputExperts} → {prune.OutputExperts} experts", pruned));

                    Step("merge", "merge 25% of the experts");
                    var merged = Path.Combine(outRoot, "merged");
                    merge = Merger.Run(new MergeOptions { Model = model, Output = merged, Ratio = 0.25, Profile = request }, progress, cancellationToken);
                    compressed.Add(Compressed("merged", $"merge {merge.Method.ToString().ToLowerInvariant()}, {merge.InputExperts} → {merge.OutputExperts} experts", merged));

                    Step("quantize", "quantize to 3 bits on average (GPTQ, mixed widths)");
                    var quantized = Path.Combine(outRoot, "quantized");
                    quantize = Quantizer.Run(new QuantizeOptions
                    {
                        Model = model, Output = quantized, Bits = 3.0, GroupSize = 64, Profile = request,
                    }, progress, cancellationToken);
                    compressed.Add(Compressed("quantized", $"quantize GPTQ mixed {quantize.AverageBits:0.##} bits (gptq format, group 64)", quantized));
                }
                finally
                {
                    if (options.OutputDir is null && Directory.Exists(outRoot)) Directory.Delete(outRoot, recursive: true);
                }

                DemoCompressedModel Compressed(string name, string description, string dir)
                {
                    Step("evaluate", $"evaluate the {name} model against the original");
                    return new(name, description, Path.GetFullPath(dir), PerDomainEvaluation.TensorBytes(dir),
                        PerDomainEvaluation.Run(dir, model, domainFiles, options.MaxTokensPerDomain, options.Context, progress, cancellationToken));
                }
            }
            return new DemoReport(Path.GetFullPath(model), PerDomainEvaluation.TensorBytes(model), calibration, domains, compressed, clock.Elapsed)
            {
                Prune = prune, Merge = merge, Quantize = quantize, PrunedUsage = prunedUsage,
            };
        }
        finally
        {
            if (options.ProfileOut is null && Directory.Exists(profileDir)) Directory.Delete(profileDir, recursive: true);
        }
    }
}
