using System.CommandLine;
using MoECompress.Cli.Rendering;
using MoECompress.Formats.Quantized;
using MoECompress.Formats.Safetensors;

namespace MoECompress.Cli.Commands;

/// <summary>`moe-compress dequantize &lt;in&gt; &lt;out&gt; [--dtype bf16|f16|f32]`: packed GPTQ / compressed-tensors output back to plain weights.</summary>
internal static class DequantizeCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var input = new Argument<string>("in") { Description = "Packed checkpoint (gptq or compressed-tensors pack-quantized)" };
        var output = new Argument<string>("out") { Description = "Folder of the dequantized checkpoint" };
        var dtype = new Option<string>("--dtype") { Description = "bf16, f16 or f32", DefaultValueFactory = _ => "bf16" };
        var overwrite = new Option<bool>("--overwrite") { Description = "Replace the output folder if it exists" };
        var json = new Option<bool>("--json") { Description = "Print the result as JSON" };
        var command = new Command("dequantize", "Turn a packed quantized checkpoint back into plain bf16 weights") { input, output, dtype, overwrite, json };
        command.SetAction(async (parse, ct) =>
        {
            var type = OptionChecks.ParseFloatDType(parse.GetValue(dtype)!, "--dtype");
            var progress = new ConsoleProgress(stderr);
            var result = await Task.Run(() => Dequantizer.Run(new DequantizeOptions
            {
                Input = parse.GetValue(input)!,
                Output = parse.GetValue(output)!,
                Overwrite = parse.GetValue(overwrite),
                DType = type,
            }, new CopyProgressLines(progress), ct), ct);
            stdout.WriteLine(parse.GetValue(json) ? result.ToString() : result.ToMarkdown());
            return 0;
        });
        return command;
    }
}
