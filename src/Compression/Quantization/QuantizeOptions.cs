using System.Text.Json.Nodes;
using MoECompress.Compression.Calibration;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Quantized;

namespace MoECompress.Compression.Quantization;

/// <summary>
/// Options of <see cref="Quantizer.Run"/> (the <c>quantize</c> command): the model and output, the budget (average bits
/// over the routed experts' parameters, or the output's size in bytes), how experts are quantized (RTN/GPTQ, group
/// size, symmetry, act-order, gate-weighted Hessians), how widths are allocated (MC-MoE PMQ: candidates, α/β/γ,
/// granularity, or one uniform width), the output format, and what else to quantize.
/// </summary>
public sealed record QuantizeOptions
{
    /// <summary>Model folder (config.json, safetensors weights, tokenizer).</summary>
    public required string Model { get; init; }
    /// <summary>Output folder to create (not needed with <see cref="DryRun"/>).</summary>
    public string? Output { get; init; }
    /// <summary>Average bits per routed-expert parameter (codes only: scales and zero points are not counted). Exactly one
    /// of this and <see cref="Size"/>. With <see cref="Uniform"/>, the width of every expert.</summary>
    public double? Bits { get; init; }
    /// <summary>Size of the output checkpoint's tensors in bytes (everything: packed experts with their scales and zero
    /// points, and every tensor copied unchanged). Exactly one of this and <see cref="Bits"/>; packed formats only.</summary>
    public long? Size { get; init; }
    /// <summary>RTN or GPTQ (default GPTQ, from the calibration profile's per-expert Hessians).</summary>
    public QuantizeMethod Method { get; init; } = QuantizeMethod.Gptq;
    /// <summary>Output format (default GPTQ v1 tensors with a <c>dynamic</c> quantization_config).</summary>
    public QuantizedFormat Format { get; init; } = QuantizedFormat.Gptq;
    /// <summary>Input columns per scale/zero group (default 128; −1 = one group per row).</summary>
    public int GroupSize { get; init; } = 128;
    /// <summary>Symmetric quantization (no zero point).</summary>
    public bool Symmetric { get; init; }
    /// <summary>GPTQ act-order (desc_act).</summary>
    public bool ActOrder { get; init; }
    /// <summary>GPTQ with gate-weighted Hessians Σ g·x xᵀ (MoEQuant).</summary>
    public bool GateWeighted { get; init; }
    /// <summary>Widths the allocation chooses from (default {2, 3, 4}).</summary>
    public IReadOnlyList<int> Candidates { get; init; } = [2, 3, 4];
    /// <summary>Exponent of the router frequency φ in the PMQ cost (default 1).</summary>
    public double Alpha { get; init; } = 1.0;
    /// <summary>Exponent of the routing weight w in the PMQ cost (default 1.5).</summary>
    public double Beta { get; init; } = 1.5;
    /// <summary>Exponent of the sensitivity ε in the PMQ cost (default 2).</summary>
    public double Gamma { get; init; } = 2.0;
    /// <summary>One width per expert, or one per MoE layer (what vLLM's fused MoE kernels need).</summary>
    public BitAllocationGranularity Granularity { get; init; } = BitAllocationGranularity.Expert;
    /// <summary>No allocation: every routed expert at <see cref="Bits"/> (an integer width), for baselines.</summary>
    public bool Uniform { get; init; }
    /// <summary>Quantize attention projections to this width with RTN (null: keep them in 16 bits).</summary>
    public int? AttentionBits { get; init; }
    /// <summary>Quantize shared experts to this width with RTN (null: keep them).</summary>
    public int? SharedExpertBits { get; init; }
    /// <summary>Pin super experts (calibration profile) to the highest candidate width (expert granularity). Default on.</summary>
    public bool ProtectSuperExperts { get; init; } = true;
    /// <summary>Fewest Hessian tokens for GPTQ; experts with fewer (and cold experts) use RTN. Default 16.</summary>
    public long MinGptqTokens { get; init; } = 16;
    /// <summary>GPTQ dampening, fraction of the mean Hessian diagonal (default 0.01).</summary>
    public double DampPercent { get; init; } = 0.01;
    /// <summary>Solver of the allocation (default: exact MIP when small, rounded LP relaxation when large).</summary>
    public BitAllocationSolver Solver { get; init; } = BitAllocationSolver.Auto;
    /// <summary>Where the calibration statistics come from (a saved profile, or calibration in memory).</summary>
    public ProfileRequest Profile { get; init; } = new();
    /// <summary>Replace an existing output folder.</summary>
    public bool Overwrite { get; init; }
    /// <summary>Which outputs feed layer l+1 in the sequential GPTQ pass: the quantized layer l's (default, standard GPTQ
    /// practice) or the original's.</summary>
    public Propagation Propagate { get; init; } = Propagation.Compressed;
    /// <summary>Memory budget of the process in bytes (null = 75% of physical memory): experts of one layer are processed
    /// in chunks whose Hessians fit, and calibration hidden states spill to a temporary file when needed.</summary>
    public long? MaxMemoryBytes { get; init; }
    /// <summary>Quantize only the routed experts of the MoE layers in this range (others copied unchanged), or null for
    /// every layer.</summary>
    public Pipeline.LayerRange? Layers { get; init; }
    /// <summary>Never collect the Hessians of more than this many experts of a layer at once (null = as many as the
    /// memory budget allows). Smaller chunks run the layer more often; the output is the same.</summary>
    public int? MaxExpertsPerChunk { get; init; }
    /// <summary>Hold each layer's routed experts in their stored bfloat16/float16 type while the layer runs (true), in
    /// float32 (false), or let the memory planner choose (null: 16-bit only when it fits more experts per chunk into
    /// the budget). The forward pass is the same either way; with compressed propagation the quantized weights the next
    /// layers see are rounded to that type.</summary>
    public bool? HoldExpertsAt16Bit { get; init; }
    /// <summary>Release each layer's weights while its experts are solved, loading it again for every chunk's forward
    /// pass (true), hold it throughout (false), or let the memory planner choose (null: release only when that fits more
    /// experts per chunk into the budget). The output is the same either way.</summary>
    public bool? ReleaseLayerForSolves { get; init; }
    /// <summary>Continue the partial output an interrupted run left beside <see cref="Output"/> (same options and input):
    /// the write pass restarts at the first layer that was not finished and the result is byte-identical to an
    /// uninterrupted run. Without it, a partial folder is an error naming it.</summary>
    public bool Resume { get; init; }
    /// <summary>Plan only: calibrate, measure, allocate and report the predicted size; write nothing.</summary>
    public bool DryRun { get; init; }

    /// <summary>The quantization recipe these options describe.</summary>
    public QuantizeRecipe Recipe => new()
    {
        Method = Method, GroupSize = GroupSize, Symmetric = Symmetric, ActOrder = ActOrder && Method == QuantizeMethod.Gptq,
        GateWeighted = GateWeighted, DampPercent = DampPercent, MinGptqTokens = MinGptqTokens,
    };

    /// <summary>True when widths come from the PMQ allocation (not <see cref="Uniform"/>).</summary>
    public bool Allocates => !Uniform;

    /// <summary>Every width the run may write for routed experts.</summary>
    public IReadOnlyList<int> ExpertWidths => Uniform && Bits is { } b ? [(int)b] : Candidates.Order().ToList();

    /// <summary>
    /// Checks everything that needs no file: one budget, widths the quantizers and the format support, group size,
    /// exponents, an output folder. Throws <see cref="MoeCompressException"/> (Usage) naming the option.
    /// </summary>
    public void Validate()
    {
        if (string.IsNullOrWhiteSpace(Model)) throw new MoeCompressException(ErrorKind.Usage, "--model: give the model folder");
        if (!DryRun && string.IsNullOrWhiteSpace(Output)) throw new MoeCompressException(ErrorKind.Usage, "--output: give the folder to write (or --dry-run)");
        if (Output is not null && Path.GetFullPath(Output).TrimEnd('/') == Path.GetFullPath(Model).TrimEnd('/'))
            throw new MoeCompressException(ErrorKind.Usage, $"--output {Output}: is the model folder; the input is never modified");
        if ((Bits is null) == (Size is null))
            throw new MoeCompressException(ErrorKind.Usage, "give exactly one budget: --bits (average bits per routed-expert weight) or --size (bytes)");
        if (Bits is { } bits && (!double.IsFinite(bits) || bits <= 0))
            throw new MoeCompressException(ErrorKind.Usage, $"--bits {bits}: must be a positive number");
        if (Size is <= 0) throw new MoeCompressException(ErrorKind.Usage, $"--size {Size}: must be a positive number of bytes");
        if (Uniform)
        {
            if (Bits is not { } ub || ub != Math.Floor(ub) || !QuantizationScheme.SupportedBits.Contains((int)ub))
                throw new MoeCompressException(ErrorKind.Usage,
                    $"--uniform needs --bits set to one width ({string.Join(", ", QuantizationScheme.SupportedBits)}){(Size is not null ? ", not --size" : $", got {Bits}")}");
        }
        else
        {
            new BitAllocatorOptions
            {
                Candidates = Candidates, Alpha = Alpha, Beta = Beta, Gamma = Gamma, AverageBits = Bits, BudgetBytes = Size,
                BudgetOption = Bits is null ? "--size" : "--bits",
            }.Validate();
            if (Bits is { } avg && avg < Candidates.Min())
                throw new MoeCompressException(ErrorKind.Infeasible,
                    $"--bits {avg}: below the lowest candidate width {Candidates.Min()} (--candidates {string.Join(",", Candidates)})");
        }
        new QuantizationScheme(ExpertWidths[0], GroupSize, Symmetric).Validate("--bits");
        if (AttentionBits is { } ab) new QuantizationScheme(ab, GroupSize, Symmetric).Validate("--attention-bits");
        if (SharedExpertBits is { } sb) new QuantizationScheme(sb, GroupSize, Symmetric).Validate("--shared-expert-bits");
        if (Format != QuantizedFormat.Dequantized)
        {
            foreach (var (option, widths) in new[]
                     {
                         (Uniform ? "--bits" : "--candidates", ExpertWidths),
                         ("--attention-bits", AttentionBits is { } a ? [a] : (IReadOnlyList<int>)[]),
                         ("--shared-expert-bits", SharedExpertBits is { } s ? [s] : (IReadOnlyList<int>)[]),
                     })
                foreach (var w in widths)
                    if (!PackedScheme.PackableBits.Contains(w))
                        throw new MoeCompressException(ErrorKind.Usage,
                            $"{option}: the {Format.ToName()} format stores {string.Join(", ", PackedScheme.PackableBits)} bits, not {w}; use --format dequantized");
        }
        if (Size is not null && Format == QuantizedFormat.Dequantized)
            throw new MoeCompressException(ErrorKind.Usage,
                "--size needs a packed format (gptq or compressed-tensors): dequantized output keeps the original size at any width; use --bits");
        if (!double.IsFinite(DampPercent) || DampPercent < 0)
            throw new MoeCompressException(ErrorKind.Usage, $"--damp {DampPercent}: must be ≥ 0");
        if (MinGptqTokens < 1) throw new MoeCompressException(ErrorKind.Usage, $"--min-gptq-tokens {MinGptqTokens}: must be at least 1");
        if (MaxExpertsPerChunk is < 1) throw new MoeCompressException(ErrorKind.Usage, $"--max-experts-per-chunk {MaxExpertsPerChunk}: must be at least 1");
        if (MaxMemoryBytes is <= 0) throw new MoeCompressException(ErrorKind.Usage, $"--max-memory {MaxMemoryBytes}: must be a positive number of bytes");
        if (!Enum.IsDefined(Propagate)) throw new MoeCompressException(ErrorKind.Usage, $"--propagate {Propagate}: use compressed or original");
    }

    /// <summary>The options as JSON (recorded in the report and the output's manifest).</summary>
    public JsonObject ToJsonObject() => new()
    {
        ["model"] = Model,
        ["output"] = Output,
        ["bits"] = Bits,
        ["size"] = Size,
        ["method"] = Method.ToString().ToLowerInvariant(),
        ["format"] = Format.ToName(),
        ["group_size"] = GroupSize,
        ["symmetric"] = Symmetric,
        ["act_order"] = ActOrder,
        ["gate_weighted"] = GateWeighted,
        ["candidates"] = new JsonArray(Candidates.Select(b => (JsonNode?)b).ToArray()),
        ["alpha"] = Alpha,
        ["beta"] = Beta,
        ["gamma"] = Gamma,
        ["granularity"] = Granularity.ToString().ToLowerInvariant(),
        ["uniform"] = Uniform,
        ["attention_bits"] = AttentionBits,
        ["shared_expert_bits"] = SharedExpertBits,
        ["protect_super_experts"] = ProtectSuperExperts,
        ["min_gptq_tokens"] = MinGptqTokens,
        ["damp_percent"] = DampPercent,
        ["solver"] = Solver.ToString().ToLowerInvariant(),
        ["profile"] = Profile.Profile,
        ["data"] = Profile.Data,
        ["samples"] = Profile.Samples,
        ["seq_len"] = Profile.SeqLen,
        ["seed"] = Profile.Seed,
        ["dry_run"] = DryRun,
        ["propagate"] = Propagate.ToString().ToLowerInvariant(),
        ["max_memory"] = MaxMemoryBytes,
        ["layers"] = Layers?.ToString(),
    };
}
