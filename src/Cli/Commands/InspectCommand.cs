using System.CommandLine;
using MoECompress.Formats.Inspection;

namespace MoECompress.Cli.Commands;

/// <summary>`moe-compress inspect &lt;checkpoint&gt; [--json]`: what a checkpoint holds, read from headers only.</summary>
internal static class InspectCommand
{
    public static Command Create(TextWriter stdout)
    {
        var checkpoint = new Argument<string>("checkpoint") { Description = "Checkpoint folder (config.json + safetensors)" };
        var json = new Option<bool>("--json") { Description = "Print the report as JSON" };
        var command = new Command("inspect", "Show family, layers, experts, routing, dtypes, parameter counts and bytes per component")
        {
            checkpoint, json,
        };
        command.SetAction(parse =>
        {
            var report = CheckpointInspector.Inspect(parse.GetValue(checkpoint)!);
            stdout.WriteLine(parse.GetValue(json) ? report.ToJson() : report.ToText());
            return 0;
        });
        return command;
    }
}
