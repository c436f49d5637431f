using MoECompress.Compression.Pipeline;
using System.CommandLine;
using MoECompress.Cli.Rendering;
using MoECompress.Compression.Quantization;
using MoECompress.Compression.Reporting;
using MoECompress.Formats.Quantized;

namespace MoECompress.Cli.Commands;

/// <summary>
/// `moe-compress quantize &lt;in&gt; &lt;out&gt; (--bits B | --size S) [--method gptq|rtn] [--format gptq|compressed-tensors|dequantized]
/// [--granularity expert|layer]`: mixed-precision quantization of the routed experts, widths chosen by an OR-Tools
/// allocation of MC-MoE's cost.
/// </summary>
internal static class QuantizeCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var input = new Argument<string>("in") { Description = "Model folder to quantize (never modified)" };
        var output = new Argument<string?>("out") { Description = "Folder of the quantized checkpoint (not needed with --dry-run)", Arity = ArgumentArity.ZeroOrOne };
        var bits = new Option<double?>("--bits") { Description = "Average bits per routed-expert weight, e.g. 2.5 (with --uniform: the width of every expert)" };
        var size = new Option<string?>("--size") { Description = "Size budget of the output's tensors, e.g. 12GB or 500MB (packed formats)" };
        var method = new Option<string>("--method") { Description = "gptq (per-expert Hessians collected layer by layer) or rtn", DefaultValueFactory = _ => "gptq" };
        var format = new Option<string>("--format") { Description = "gptq, compressed-tensors, dequantized (bf16 fake-quant) or gguf (one .gguf file for llama.cpp)", DefaultValueFactory = _ => "gptq" };
        var granularity = new Option<string>("--granularity") { Description = "expert (one width per expert) or layer (one per MoE layer, for vLLM's fused kernels)", DefaultValueFactory = _ => "expert" };
        var uniform = new Option<string?>("--uniform") { Description = "Every routed expert at --bits (no allocation; baselines); with --format gguf: one ggml type for every weight (F16, BF16, Q8_0, Q4_K, ...)", Arity = ArgumentArity.ZeroOrOne };
        var tensorTypes = new Option<string[]>("--tensor-type") { Description = "--format gguf: REGEX=TYPE type of the GGUF tensors whose name matches (repeatable; first match wins)" };
        var candidates = new Option<string>("--candidates") { Description = "Widths the allocation may choose, comma-separated (1,2,3,4,8)", DefaultValueFactory = _ => "2,3,4" };
        var groupSize = new Option<int>("--group-size") { Description = "Input columns per scale/zero group (-1 = whole row)", DefaultValueFactory = _ => 128 };
        var sym = new Option<bool>("--sym") { Description = "Symmetric quantization" };
        var actOrder = new Option<bool>("--act-order") { Description = "GPTQ act-order (desc_act)" };
        var gateWeighted = new Option<bool>("--gate-weighted") { Description = "GPTQ with gate-weighted Hessians (MoEQuant)" };
        var alpha = new Option<double>("--alpha") { Description = "Exponent of the frequency φ in the cost", DefaultValueFactory = _ => 1.0 };
        var beta = new Option<double>("--beta") { Description = "Exponent of the routing weight w in the cost", DefaultValueFactory = _ => 1.5 };
        var gamma = new Option<double>("--gamma") { Description = "Exponent of the measured error ε in the cost", DefaultValueFactory = _ => 2.0 };
        var attentionBits = new Option<int?>("--attention-bits") { Description = "Also quantize attention projections (RTN) to this width (default: keep 16-bit)" };
        var sharedBits = new Option<int?>("--shared-expert-bits") { Description = "Also quantize shared experts (RTN) to this width (default: keep)" };
        var propagate = new Option<string>("--propagate") { Description = "Outputs that feed the next layer in the sequential GPTQ pass: compressed (the quantized layer's) or original", DefaultValueFactory = _ => "compressed" };
        var maxMemory = new Option<string?>("--max-memory") { Description = "Memory budget, e.g. 16GB (default: 75% of physical RAM); experts of a layer are processed in chunks that fit" };
        var layers = new Option<string?>("--layers") { Description = "Quantize only the experts of these decoder layers, e.g. 0-3 or 8- (others copied)" };
        var resume = new Option<bool>("--resume") { Description = "Continue the partial output an interrupted run left beside <out> (same options); byte-identical to an uninterrupted run" };
        var maxChunk = new Option<int?>("--max-experts-per-chunk") { Description = "Collect the Hessians of at most this many experts of a layer at once (default: as many as --max-memory allows)" };
        var shared = new CompressionOptions();
        var command = new Command("quantize", "Quantize routed experts at mixed precision (widths chosen by an OR-Tools allocation)")
        {
            input, output, bits, size, method, format, granularity, uniform, candidates, groupSize, sym, actOrder, gateWeighted,
            alpha, beta, gamma, attentionBits, sharedBits, propagate, maxMemory, layers, resume, maxChunk, tensorTypes,
        };
        foreach (var o in shared.All) command.Options.Add(o);
        command.SetAction(async (parse, ct) =>
        {
            if (string.Equals(parse.GetValue(format), "gguf", StringComparison.OrdinalIgnoreCase))
                return await GgufQuantizeCommand.RunAsync(parse, input, output, bits, size, uniform, candidates, tensorTypes, shared, stdout, stderr, ct);
            if (parse.GetValue(uniform) is { } typeName) throw OptionChecks.Usage("--uniform", $"takes a ggml type ('{typeName}') only with --format gguf");
            var widths = ParseWidths(parse.GetValue(candidates)!);
            var options = new QuantizeOptions
            {
                Model = parse.GetValue(input)!,
                Output = parse.GetValue(output),
                Bits = parse.GetValue(bits),
                Size = parse.GetValue(size) is { } s ? ByteSize.Parse(s, "--size") : null,
                Method = OptionChecks.ParseEnum<QuantizeMethod>(parse.GetValue(method)!, "--method"),
                Format = QuantizedFormats.Parse(parse.GetValue(format)!),
                Granularity = OptionChecks.ParseEnum<BitAllocationGranularity>(parse.GetValue(granularity)!, "--granularity"),
                Uniform = parse.GetResult(uniform) is not null,
                Candidates = widths,
                GroupSize = parse.GetValue(groupSize),
                Symmetric = parse.GetValue(sym),
                ActOrder = parse.GetValue(actOrder),
                GateWeighted = parse.GetValue(gateWeighted),
                Alpha = parse.GetValue(alpha),
                Beta = parse.GetValue(beta),
                Gamma = parse.GetValue(gamma),
                AttentionBits = parse.GetValue(attentionBits),
                SharedExpertBits = parse.GetValue(sharedBits),
                Profile = shared.ProfileRequest(parse),
                Overwrite = parse.GetValue(shared.Overwrite),
                Propagate = OptionChecks.ParseEnum<Propagation>(parse.GetValue(propagate)!, "--propagate"),
                MaxMemoryBytes = parse.GetValue(maxMemory) is { } m ? ByteSize.Parse(m, "--max-memory") : null,
                Layers = parse.GetValue(layers) is { } r ? Compression.Pipeline.LayerRange.Parse(r) : null,
                Resume = parse.GetValue(resume),
                MaxExpertsPerChunk = parse.GetValue(maxChunk),
                DryRun = parse.GetValue(shared.DryRun),
            };
            if (options.Output is null && !options.DryRun) throw OptionChecks.Usage("out", "give the output folder (or --dry-run)");
            var report = await Quantizer.RunAsync(options, ConsoleProgress.For(stderr), ct);
            return await shared.FinishAsync(parse, options.Model, options.DryRun ? null : options.Output, report.ToJsonObject(), report.ToMarkdown(), stdout, stderr, ct,
                new HtmlReport($"quantize: {report.Model}").Quantization(report));
        });
        return command;
    }

    private static IReadOnlyList<int> ParseWidths(string text)
    {
        var widths = new List<int>();
        foreach (var part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            widths.Add(int.TryParse(part, out var w) ? w : throw OptionChecks.Usage("--candidates", $"'{part}' is not a whole number of bits"));
        if (widths.Count == 0) throw OptionChecks.Usage("--candidates", "give at least one width");
        return widths.Distinct().Order().ToList();
    }
}
