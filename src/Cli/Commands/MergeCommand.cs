using System.CommandLine;
using MoECompress.Cli.Rendering;
using MoECompress.Compression.Merging;
using MoECompress.Compression.Quantization;
using MoECompress.Compression.Reporting;

namespace MoECompress.Cli.Commands;

/// <summary>
/// `moe-compress merge &lt;in&gt; &lt;out&gt; (--ratio R | --keep N) [--method average|subspace] [--rank r | --energy e]
/// [--whiten]`: clusters the routed experts of every MoE layer and merges each cluster into one expert.
/// </summary>
internal static class MergeCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var input = new Argument<string>("in") { Description = "Model folder to merge (never modified)" };
        var output = new Argument<string?>("out") { Description = "Folder of the merged checkpoint (not needed with --dry-run)", Arity = ArgumentArity.ZeroOrOne };
        var ratio = new Option<double?>("--ratio") { Description = "Fraction of routed experts to remove, e.g. 0.25" };
        var keep = new Option<int?>("--keep") { Description = "Routed experts (clusters) per MoE layer" };
        var method = new Option<string>("--method") { Description = "average (frequency-weighted, HC-SMoE) or subspace (Sub-MoE joint SVD with truncation)", DefaultValueFactory = _ => Name(MergeOptions.DefaultMethod) };
        var clustering = new Option<string>("--clustering") { Description = "hierarchical (on mean outputs) or kmeans (k-means++ on output cosine similarity)", DefaultValueFactory = _ => Name(MergeOptions.DefaultClustering) };
        var rank = new Option<int?>("--rank") { Description = "subspace: singular directions kept per projection" };
        var energy = new Option<double?>("--energy") { Description = $"subspace: fraction of Σσ² kept per projection (default {MergeOptions.DefaultEnergy})" };
        var whiten = new Option<bool>("--whiten") { Description = "subspace: whiten by the Cholesky factor of the members' XᵀX before truncating" };
        var routerRows = new Option<string>("--router-rows") { Description = "auto (measured), representative or weighted", DefaultValueFactory = _ => "auto" };
        var allowSuper = new Option<bool>("--allow-super-experts") { Description = "Merge super experts like others (by default each stays alone)" };
        var noAlign = new Option<bool>("--no-align") { Description = "Do not permute members' hidden neurons onto the representative's before merging" };
        var maxCluster = new Option<int?>("--max-cluster-size") { Description = "Most experts per cluster (default: balanced, ceil(E/E'); 0 = no limit)" };
        var routerSamples = new Option<int>("--router-samples") { Description = "Calibration sequences used to measure the router-row choice", DefaultValueFactory = _ => MergeOptions.DefaultRouterSamples };
        var seed = new Option<int>("--kmeans-seed") { Description = "Seed of k-means++", DefaultValueFactory = _ => 0 };
        var propagate = new Option<string?>("--propagate")
        {
            Description = "What feeds the next layer while statistics are measured: compressed (the merged layer's outputs; one layer at a time) " +
                          "or original. Default: compressed when the statistics are measured in this run (--data), original with --profile",
        };
        var resume = new Option<bool>("--resume") { Description = "Continue an interrupted compressed-propagation merge from its journal beside <out> (same options); byte-identical to an uninterrupted run" };
        var shared = new CompressionOptions();
        var command = new Command("merge", "Cluster routed experts per layer and merge each cluster into one expert")
        {
            input, output, ratio, keep, method, clustering, rank, energy, whiten, routerRows, allowSuper, noAlign, maxCluster, routerSamples, seed, propagate, resume,
        };
        foreach (var o in shared.All) command.Options.Add(o);
        command.SetAction(async (parse, ct) =>
        {
            CompressionOptions.CheckReduction(parse.GetValue(ratio), parse.GetValue(keep));
            if (parse.GetValue(rank) is int r) OptionChecks.Positive(r, "--rank");
            if (parse.GetValue(energy) is double e && !(e > 0 && e <= 1)) throw OptionChecks.Usage("--energy", $"{e} must be in (0, 1]");
            if (parse.GetValue(rank) is not null && parse.GetValue(energy) is not null) throw OptionChecks.Usage("--rank", "give --rank or --energy, not both");
            var options = new MergeOptions
            {
                Model = parse.GetValue(input)!,
                Output = parse.GetValue(output),
                Ratio = parse.GetValue(ratio),
                Keep = parse.GetValue(keep),
                Method = OptionChecks.ParseEnum<MergeMethod>(parse.GetValue(method)!, "--method"),
                Clustering = OptionChecks.ParseEnum<ClusteringMethod>(parse.GetValue(clustering)!, "--clustering"),
                Rank = parse.GetValue(rank),
                Energy = parse.GetValue(energy),
                Whiten = parse.GetValue(whiten),
                RouterRows = OptionChecks.ParseEnum<RouterRowChoice>(parse.GetValue(routerRows)!, "--router-rows"),
                AllowSuperExperts = parse.GetValue(allowSuper),
                Align = !parse.GetValue(noAlign),
                MaxClusterSize = parse.GetValue(maxCluster),
                RouterSamples = parse.GetValue(routerSamples),
                Seed = parse.GetValue(seed),
                Propagate = parse.GetValue(propagate) is { } p ? OptionChecks.ParseEnum<Propagation>(p, "--propagate") : null,
                Resume = parse.GetValue(resume),
                Profile = shared.ProfileRequest(parse),
                Overwrite = parse.GetValue(shared.Overwrite),
                DryRun = parse.GetValue(shared.DryRun),
            };
            if (options.Output is null && !options.DryRun) throw OptionChecks.Usage("out", "give the output folder (or --dry-run)");
            var report = await Merger.RunAsync(options, ConsoleProgress.For(stderr), ct);
            return await shared.FinishAsync(parse, options.Model, options.DryRun ? null : options.Output, report.ToJsonObject(), report.ToMarkdown(), stdout, stderr, ct,
                new HtmlReport($"merge: {report.Model}").Merging(report));
        });
        return command;
    }

    private static string Name<T>(T value) where T : struct, Enum => value.ToString().ToLowerInvariant();
}
