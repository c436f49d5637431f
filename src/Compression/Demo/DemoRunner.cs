using System.Diagnostics;
using MoECompress.Compression.Calibration;
using MoECompress.Compression.Evaluation;
using MoECompress.Formats.Errors;

namespace MoECompress.Compression.Demo;

/// <summary>
/// The README's main job on the bundled demo model: calibrate it on the bundled calibration set, then measure held-out
/// perplexity on each bundled domain. Later versions add prune, merge and quantize to this run.
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

        string profileDir = options.ProfileOut ?? Path.Combine(Path.GetTempPath(), "moe-compress-demo-" + Guid.NewGuid().ToString("N")[..10]);
        try
        {
            var calibration = Calibrator.Run(new CalibrateOptions
            {
                Model = model, Samples = options.Samples, SeqLen = options.SeqLen, Out = profileDir, Overwrite = options.ProfileOut is null,
            }, progress, cancellationToken);

            var domains = new List<(string, EvaluationReport)>();
            foreach (var file in Directory.GetFiles(heldOut).Where(f => f.EndsWith(".txt", StringComparison.OrdinalIgnoreCase)).Order(StringComparer.Ordinal))
            {
                cancellationToken.ThrowIfCancellationRequested();
                var report = Evaluator.Run(new EvaluateOptions
                {
                    Model = model, Data = file, MaxTokens = options.MaxTokensPerDomain,
                    Context = options.Context, Stride = options.Context / 2,
                }, progress, cancellationToken);
                domains.Add((Path.GetFileNameWithoutExtension(file), report));
            }
            return new DemoReport(Path.GetFullPath(model), calibration, domains, clock.Elapsed);
        }
        finally
        {
            if (options.ProfileOut is null && Directory.Exists(profileDir)) Directory.Delete(profileDir, recursive: true);
        }
    }
}
