using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using MoECompress.Compression.Data;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Gguf;

namespace MoECompress.Compression.Gguf;

/// <summary>
/// Options of <see cref="GgufExporter.Run"/> (<c>quantize --format gguf</c>): one ggml type for every weight
/// (<see cref="Uniform"/>), or routed-expert types chosen per (layer, projection) under <see cref="Bits"/> or
/// <see cref="Size"/>; the types of everything else; the calibration data for the importance weighting.
/// </summary>
public sealed record GgufExportOptions
{
    /// <summary>Model folder (config.json, safetensors, tokenizer).</summary>
    public required string Model { get; init; }
    /// <summary>The .gguf file to write (not needed with <see cref="DryRun"/>).</summary>
    public string? Output { get; init; }
    /// <summary>One type for every 2-D weight except routers (F16, BF16, Q8_0, Q4_K, ...); no calibration is needed for
    /// float types. Exactly one of this, <see cref="Bits"/> and <see cref="Size"/>.</summary>
    public GgmlType? Uniform { get; init; }
    /// <summary>Average stored bits per routed-expert weight (scales included: Q4_K is 4.5).</summary>
    public double? Bits { get; init; }
    /// <summary>Size of the whole .gguf file in bytes.</summary>
    public long? Size { get; init; }
    /// <summary>Types the allocation may give a (layer, projection) of routed experts; rows that do not fit a type's
    /// blocks use its llama-quantize fallback. Default Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_0.</summary>
    public IReadOnlyList<GgmlType> Candidates { get; init; } = [GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K, GgmlType.Q8_0];
    /// <summary>Type of attention, shared-expert, dense-MLP, embedding and output weights when not <see cref="Uniform"/> (default Q8_0).</summary>
    public GgmlType OtherType { get; init; } = GgmlType.Q8_0;
    /// <summary>Overrides by GGUF tensor name (first match wins): <c>attn_.*=Q6_K</c>. Routers and 1-D tensors stay F32.</summary>
    public IReadOnlyList<(Regex Pattern, GgmlType Type)> TensorTypes { get; init; } = [];
    /// <summary>Weight columns by the calibration importance of each expert's routed tokens (default on for quantized types).</summary>
    public bool Importance { get; init; } = true;
    /// <summary>Experts with fewer routed calibration tokens are quantized unweighted (and reported). Default 16.</summary>
    public long MinTokens { get; init; } = 16;
    /// <summary>Calibration text (null: the bundled set) and sampling.</summary>
    public string? Data { get; init; }
    public CalibrationDataOptions DataOptions { get; init; } = new() { Samples = 64, SeqLen = 256 };
    /// <summary>Replace an existing output file.</summary>
    public bool Overwrite { get; init; }
    /// <summary>Plan only: calibrate, choose the types, report the predicted size; write nothing.</summary>
    public bool DryRun { get; init; }

    /// <summary>True when some weight is quantized (not only float types), so importance helps.</summary>
    public bool Quantizes => Uniform is not { } u || !u.IsFloat();

    /// <summary>Parses <c>REGEX=TYPE</c> overrides (option <c>--tensor-type</c>).</summary>
    public static IReadOnlyList<(Regex, GgmlType)> ParseTensorTypes(IEnumerable<string> values)
    {
        var list = new List<(Regex, GgmlType)>();
        foreach (var v in values)
        {
            var eq = v.LastIndexOf('=');
            if (eq <= 0 || eq == v.Length - 1) throw new MoeCompressException(ErrorKind.Usage, $"--tensor-type '{v}': expected REGEX=TYPE, e.g. 'attn_v=Q8_0'");
            Regex re;
            try { re = new Regex(v[..eq], RegexOptions.CultureInvariant); }
            catch (ArgumentException e) { throw new MoeCompressException(ErrorKind.Usage, $"--tensor-type '{v}': bad regular expression: {e.Message}"); }
            list.Add((re, GgmlTypes.Parse(v[(eq + 1)..], "--tensor-type")));
        }
        return list;
    }

    /// <summary>Checks what needs no file; throws Usage naming the option.</summary>
    public void Validate()
    {
        if (string.IsNullOrWhiteSpace(Model)) throw new MoeCompressException(ErrorKind.Usage, "--model: give the model folder");
        if (!DryRun && string.IsNullOrWhiteSpace(Output)) throw new MoeCompressException(ErrorKind.Usage, "out: give the .gguf file to write (or --dry-run)");
        if (Output is not null && !Output.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase))
            throw new MoeCompressException(ErrorKind.Usage, $"out '{Output}': a GGUF output is one file ending in .gguf");
        if ((Uniform is not null ? 1 : 0) + (Bits is not null ? 1 : 0) + (Size is not null ? 1 : 0) != 1)
            throw new MoeCompressException(ErrorKind.Usage, "--format gguf: give exactly one of --uniform TYPE, --bits (average bits per routed-expert weight) or --size (bytes)");
        if (Bits is { } b && (!double.IsFinite(b) || b <= 0)) throw new MoeCompressException(ErrorKind.Usage, $"--bits {b}: must be a positive number");
        if (Size is <= 0) throw new MoeCompressException(ErrorKind.Usage, $"--size {Size}: must be a positive number of bytes");
        if (Candidates.Count == 0) throw new MoeCompressException(ErrorKind.Usage, "--candidates: give at least one ggml type");
        if (MinTokens < 1) throw new MoeCompressException(ErrorKind.Usage, $"--min-gptq-tokens {MinTokens}: must be at least 1");
    }

    public JsonObject ToJsonObject() => new()
    {
        ["model"] = Model,
        ["output"] = Output,
        ["format"] = "gguf",
        ["uniform"] = Uniform?.ToName(),
        ["bits"] = Bits,
        ["size"] = Size,
        ["candidates"] = new JsonArray(Candidates.Select(c => (JsonNode?)c.ToName()).ToArray()),
        ["other_type"] = OtherType.ToName(),
        ["tensor_types"] = new JsonArray(TensorTypes.Select(t => (JsonNode?)$"{t.Pattern}={t.Type.ToName()}").ToArray()),
        ["importance"] = Importance,
        ["min_tokens"] = MinTokens,
        ["data"] = Data,
        ["samples"] = DataOptions.Samples,
        ["seq_len"] = DataOptions.SeqLen,
        ["seed"] = DataOptions.Seed,
        ["dry_run"] = DryRun,
    };
}
