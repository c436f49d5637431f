using System.CommandLine;
using MoECompress.Cli.Rendering;
using MoECompress.Compression.Demo;

namespace MoECompress.Cli.Commands;

/// <summary>`moe-compress demo`: calibrate the bundled demo model and measure held-out perplexity per domain.</summary>
internal static class DemoCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var model = new Option<string?>("--model") { Description = "Model folder (default: the bundled demo model, models/moe-demo)" };
        var profile = new Option<string?>("--profile-out") { Description = "Keep the calibration profile in this folder" };
        var samples = new Option<int>("--samples") { Description = "Calibration sequences", DefaultValueFactory = _ => 16 };
        var tokens = new Option<int>("--tokens-per-domain") { Description = "Held-out tokens evaluated per domain", DefaultValueFactory = _ => 4096 };
        var command = new Command("demo", "Calibrate the bundled demo model and report held-out perplexity per domain and expert usage")
        {
            model, profile, samples, tokens,
        };
        command.SetAction(async (parse, ct) =>
        {
            OptionChecks.Positive(parse.GetValue(samples), "--samples");
            OptionChecks.Positive(parse.GetValue(tokens), "--tokens-per-domain");
            var report = await DemoRunner.RunAsync(new DemoOptions
            {
                Model = parse.GetValue(model),
                ProfileOut = parse.GetValue(profile),
                Samples = parse.GetValue(samples),
                MaxTokensPerDomain = parse.GetValue(tokens),
            }, new ConsoleProgress(stderr), ct);
            stdout.WriteLine(report.ToText());
            return 0;
        });
        return command;
    }
}
