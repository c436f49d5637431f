using MoECompress.Compression.Pipeline;
using System.CommandLine;
using MoECompress.Cli.Rendering;
using MoECompress.Compression.Gguf;
using MoECompress.Formats.Gguf;

namespace MoECompress.Cli.Commands;

/// <summary>
/// `moe-compress quantize &lt;in&gt; &lt;out.gguf&gt; --format gguf (--uniform TYPE | --bits B | --size S)
/// [--candidates Q3_K,Q4_K,…] [--tensor-type REGEX=TYPE]`: the GGUF branch of <c>quantize</c>.
/// </summary>
internal static class GgufQuantizeCommand
{
    public static async Task<int> RunAsync(ParseResult parse, Argument<string> input, Argument<string?> output, Option<double?> bits,
        Option<string?> size, Option<string?> uniform, Option<string> candidates, Option<string[]> tensorTypes, CompressionOptions shared,
        TextWriter stdout, TextWriter stderr, CancellationToken ct)
    {
        GgmlType? uniformType = null;
        if (parse.GetResult(uniform) is not null)
            uniformType = parse.GetValue(uniform) is { } name
                ? GgmlTypes.Parse(name, "--uniform")
                : throw OptionChecks.Usage("--uniform", "with --format gguf give the ggml type, e.g. --uniform Q4_K");
        var defaults = new GgufExportOptions { Model = "" };
        var request = shared.ProfileRequest(parse);
        var options = new GgufExportOptions
        {
            Model = parse.GetValue(input)!,
            Output = parse.GetValue(output),
            Uniform = uniformType,
            Bits = parse.GetValue(bits),
            Size = parse.GetValue(size) is { } s ? ByteSize.Parse(s, "--size") : null,
            Candidates = parse.GetResult(candidates) is null or { Implicit: true }
                ? defaults.Candidates
                : parse.GetValue(candidates)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                    .Select(c => GgmlTypes.Parse(c, "--candidates")).Distinct().ToList(),
            TensorTypes = GgufExportOptions.ParseTensorTypes(parse.GetValue(tensorTypes) ?? []),
            Data = request.Data,
            DataOptions = request.DataOptions,
            Overwrite = parse.GetValue(shared.Overwrite),
            DryRun = parse.GetValue(shared.DryRun),
        };
        if (request.Profile is not null) throw OptionChecks.Usage("--profile", "--format gguf collects its own expert importance; give --data instead");
        var report = await GgufExporter.RunAsync(options, ConsoleProgress.For(stderr), ct);
        return await shared.FinishAsync(parse, options.Model, options.DryRun ? null : options.Output, report.ToJsonObject(), report.ToMarkdown(), stdout, stderr, ct);
    }
}
