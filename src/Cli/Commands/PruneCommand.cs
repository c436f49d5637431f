using System.CommandLine;
using MoECompress.Cli.Rendering;
using MoECompress.Compression.Importance;
using MoECompress.Compression.Pruning;
using MoECompress.Compression.Quantization;
using MoECompress.Compression.Reporting;

namespace MoECompress.Cli.Commands;

/// <summary>
/// `moe-compress prune &lt;in&gt; &lt;out&gt; (--ratio R | --keep N) [--method M] [--profile P | --data D] [--global]`:
/// removes the least important routed experts and writes a checkpoint stock runtimes load.
/// </summary>
internal static class PruneCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var input = new Argument<string>("in") { Description = "Model folder to prune (never modified)" };
        var output = new Argument<string?>("out") { Description = "Folder of the pruned checkpoint (not needed with --dry-run)", Arity = ArgumentArity.ZeroOrOne };
        var ratio = new Option<double?>("--ratio") { Description = "Fraction of routed experts to remove, e.g. 0.25" };
        var keep = new Option<int?>("--keep") { Description = "Routed experts to keep per MoE layer" };
        var method = new Option<string?>("--method") { Description = $"Importance: {string.Join(", ", ExpertScorers.Names)} (default {Pruner.DefaultMethod})" };
        var global = new Option<bool>("--global") { Description = "Rank experts across layers, then equalise the per-layer count so stock runtimes load it" };
        var allowSuper = new Option<bool>("--allow-super-experts") { Description = "Allow removing super experts (protected by default)" };
        var propagate = new Option<string?>("--propagate")
        {
            Description = "What feeds the next layer while statistics are measured: compressed (the pruned layer's outputs; one layer at a time) " +
                          "or original. Default: compressed when the statistics are measured in this run (--data, no --global, not naee), else original",
        };
        var resume = new Option<bool>("--resume") { Description = "Continue an interrupted compressed-propagation prune from its journal beside <out> (same options); byte-identical to an uninterrupted run" };
        var shared = new CompressionOptions();
        var command = new Command("prune", "Remove the least important routed experts (same count in every MoE layer)")
        {
            input, output, ratio, keep, method, global, allowSuper, propagate, resume,
        };
        foreach (var o in shared.All) command.Options.Add(o);
        command.SetAction(async (parse, ct) =>
        {
            CompressionOptions.CheckReduction(parse.GetValue(ratio), parse.GetValue(keep));
            var options = new PruneOptions
            {
                Model = parse.GetValue(input)!,
                Output = parse.GetValue(output),
                Ratio = parse.GetValue(ratio),
                Keep = parse.GetValue(keep),
                Method = parse.GetValue(method),
                Global = parse.GetValue(global),
                AllowSuperExperts = parse.GetValue(allowSuper),
                Propagate = parse.GetValue(propagate) is { } p ? OptionChecks.ParseEnum<Propagation>(p, "--propagate") : null,
                Resume = parse.GetValue(resume),
                Profile = shared.ProfileRequest(parse),
                Overwrite = parse.GetValue(shared.Overwrite),
                DryRun = parse.GetValue(shared.DryRun),
            };
            if (options.Output is null && !options.DryRun) throw OptionChecks.Usage("out", "give the output folder (or --dry-run)");
            var report = await Task.Run(() => Pruner.Run(options, ConsoleProgress.For(stderr), ct), ct);
            return await shared.FinishAsync(parse, options.Model, options.DryRun ? null : options.Output, report.ToJsonObject(), report.ToMarkdown(), stdout, stderr, ct,
                new HtmlReport($"prune: {report.Model}").Pruning(report));
        });
        return command;
    }
}
