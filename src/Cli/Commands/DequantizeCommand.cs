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
        var input = new Argument<string>("in") { Description = "Quantized checkpoint (gptq, compressed-tensors pack-quantized, block-FP8 such as DeepSeek-V3 / Kimi K2, or MXFP4 such as GPT-OSS)" };
        var output = new Argument<string>("out") { Description = "Folder of the dequantized checkpoint" };
        var dtype = new Option<string>("--dtype") { Description = "bf16, f16 or f32", DefaultValueFactory = _ => "bf16" };
        var overwrite = new Option<bool>("--overwrite") { Description = "Replace the output folder if it exists" };
        var json = new Option<bool>("--json") { Description = "Print the result as JSON" };
        var command = new Command("dequantize", "Turn a quantized checkpoint (packed, FP8 or MXFP4) back into plain bf16 weights") { input, output, dtype, overwrite, json };
        command.SetAction(async (parse, ct) =>
        {
            var type = OptionChecks.ParseFloatDType(parse.GetValue(dtype)!, "--dtype");
            var progress = ConsoleProgress.For(stderr);
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
