using System.CommandLine;
using MoECompress.Cli.Rendering;
using MoECompress.Compression.Substitution;

namespace MoECompress.Cli.Commands;

/// <summary>
/// `moe-compress skip-plan &lt;model&gt; &lt;plan.json&gt; [--quantile q] [--protect f]`: calibrates a dynamic
/// expert-skipping plan (MC-MoE ODP) that `eval --skip-plan` applies.
/// </summary>
internal static class SkipPlanCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var model = new Argument<string>("model") { Description = "Model folder" };
        var output = new Argument<string>("plan") { Description = "Plan file to write (JSON)" };
        var quantile = new Option<double>("--quantile") { Description = "μ per layer = this quantile of the calibration w2/w1 (0.5 = median)", DefaultValueFactory = _ => 0.5 };
        var protect = new Option<double>("--protect") { Description = "Fraction of tokens with the largest MoE-input norm never skipped", DefaultValueFactory = _ => 0.02 };
        var overwrite = new Option<bool>("--overwrite") { Description = "Replace the plan file if it exists" };
        var shared = new CompressionOptions();
        var command = new Command("skip-plan", "Calibrate dynamic skipping of the second expert (apply it with eval --skip-plan)")
        {
            model, output, quantile, protect, overwrite, shared.Data, shared.Samples, shared.SeqLen, shared.Seed,
        };
        command.SetAction(async (parse, ct) =>
        {
            var path = Path.GetFullPath(parse.GetValue(output)!);
            if (File.Exists(path) && !parse.GetValue(overwrite))
                throw new Formats.Errors.MoeCompressException(Formats.Errors.ErrorKind.Io, $"{path}: file exists (use --overwrite to replace it)");
            var plan = await Task.Run(() => SkipPlanner.Run(new SkipPlanOptions
            {
                Model = parse.GetValue(model)!,
                Quantile = parse.GetValue(quantile),
                ProtectFraction = parse.GetValue(protect),
                Data = parse.GetValue(shared.Data),
                DataOptions = shared.DataOptions(parse),
            }, ConsoleProgress.For(stderr), ct), ct);
            ReportFiles.WriteAtomic(path, plan.ToJson() + "\n");
            foreach (var l in plan.Layers)
                stdout.WriteLine(FormattableString.Invariant(
                    $"layer {l.Layer}: mu {l.Mu:G4}, protected above norm {l.NormThreshold:G4}, {100 * l.CalibrationSkippedFraction:F1}% of expert calls skipped on calibration"));
            stdout.WriteLine($"wrote {path}");
            return 0;
        });
        return command;
    }
}
