using System.CommandLine;
using MoECompress.Cli.Rendering;
using MoECompress.Compression.Calibration;
using MoECompress.Compression.Pruning;
using MoECompress.Formats.Errors;

namespace MoECompress.Cli.Commands;

/// <summary>
/// `moe-compress profiles compare &lt;p1&gt; &lt;p2&gt; … [--keep N] [--method M]`: per-layer overlap of the experts that
/// profiles calibrated on different tasks or domains would keep (PreMoe's task-adaptive view).
/// </summary>
internal static class ProfilesCommand
{
    public static Command Create(TextWriter stdout)
    {
        var profiles = new Argument<string[]>("profiles") { Description = "Profile folders (from `calibrate --data <task text>`); name=path to label them", Arity = ArgumentArity.OneOrMore };
        var keep = new Option<int?>("--keep") { Description = "Size of each profile's top set (default: half the experts)" };
        var method = new Option<string>("--method") { Description = "Importance that ranks experts (frequency, routing-weight, tcess, reap, stun)", DefaultValueFactory = _ => "tcess" };
        var json = new Option<bool>("--json") { Description = "Print the comparison as JSON" };
        var reportDir = new Option<string?>("--report-dir") { Description = "Also write report.json and report.md into this folder" };
        var compare = new Command("compare", "Per-layer overlap of the experts different task profiles keep") { profiles, keep, method, json, reportDir };
        compare.SetAction((parse, ct) =>
        {
            var named = new List<(string, CalibrationProfile)>();
            foreach (var item in parse.GetValue(profiles)!)
            {
                var eq = item.IndexOf('=');
                var (name, path) = eq > 0 ? (item[..eq], item[(eq + 1)..]) : (Path.GetFileName(Path.TrimEndingDirectorySeparator(item)), item);
                if (!Directory.Exists(path) && !File.Exists(path))
                    throw new MoeCompressException(ErrorKind.Usage, $"{Path.GetFullPath(path)}: calibration profile not found");
                named.Add((name, CalibrationProfile.Load(path)));
            }
            int experts = named[0].Item2.Layers.Count == 0 ? 0 : named[0].Item2.Layers[0].NumExperts;
            var report = ProfileComparison.Compare(named, parse.GetValue(keep) ?? Math.Max(1, experts / 2), parse.GetValue(method)!);
            if (parse.GetValue(reportDir) is { } dir) ReportFiles.Write(dir, report.ToJson(), report.ToMarkdown());
            stdout.WriteLine(parse.GetValue(json) ? report.ToJson() : report.ToMarkdown());
            return Task.FromResult(0);
        });
        return new Command("profiles", "Work with calibration profiles") { compare };
    }
}
