using MoECompress.Compression.Calibration;
using MoECompress.Compression.Quantization;
using MoECompress.Formats.Quantized;

namespace MoECompress.Compression.Pipeline;

/// <summary>Quantizes the routed experts (the <c>quantize</c> command; <see cref="Quantizer"/>); the last step of a recipe.</summary>
public sealed record QuantizeStep : CompressionStep
{
    private static readonly QuantizeOptions Defaults = new() { Model = "." };

    /// <inheritdoc />
    public override string Kind => "quantize";
    /// <inheritdoc />
    public override bool ChangesExperts => false;

    /// <summary>Average bits per routed-expert weight (with <see cref="Uniform"/>: every expert's width).</summary>
    public double? Bits { get; init; }
    /// <summary>Size budget of the output's tensors in bytes (instead of <see cref="Bits"/>).</summary>
    public long? Size { get; init; }
    /// <summary>gptq or rtn.</summary>
    public QuantizeMethod Method { get; init; } = Defaults.Method;
    /// <summary>gptq, compressed-tensors or dequantized.</summary>
    public QuantizedFormat Format { get; init; } = Defaults.Format;
    /// <summary>One width per expert or per layer.</summary>
    public BitAllocationGranularity Granularity { get; init; } = Defaults.Granularity;
    /// <summary>Every routed expert at <see cref="Bits"/>.</summary>
    public bool Uniform { get; init; }
    /// <summary>Widths the allocation may choose.</summary>
    public IReadOnlyList<int> Candidates { get; init; } = Defaults.Candidates;
    /// <summary>Input columns per scale/zero group (-1: whole row).</summary>
    public int GroupSize { get; init; } = Defaults.GroupSize;
    /// <summary>Symmetric quantization.</summary>
    public bool Symmetric { get; init; }
    /// <summary>GPTQ act-order.</summary>
    public bool ActOrder { get; init; }
    /// <summary>GPTQ with gate-weighted Hessians.</summary>
    public bool GateWeighted { get; init; }
    /// <summary>Exponents of frequency, routing weight and measured error in the allocation cost.</summary>
    public double Alpha { get; init; } = Defaults.Alpha;
    /// <inheritdoc cref="Alpha"/>
    public double Beta { get; init; } = Defaults.Beta;
    /// <inheritdoc cref="Alpha"/>
    public double Gamma { get; init; } = Defaults.Gamma;
    /// <summary>Also quantize attention projections (RTN) to this width.</summary>
    public int? AttentionBits { get; init; }
    /// <summary>Also quantize shared experts (RTN) to this width.</summary>
    public int? SharedExpertBits { get; init; }
    /// <summary>Outputs that feed the next layer in the sequential GPTQ pass.</summary>
    public Propagation Propagate { get; init; } = Defaults.Propagate;
    /// <summary>Memory budget in bytes (null: 75% of physical RAM).</summary>
    public long? MaxMemoryBytes { get; init; }
    /// <summary>Quantize only the experts of these decoder layers.</summary>
    public LayerRange? Layers { get; init; }
    /// <summary>Most experts whose Hessians are collected at once.</summary>
    public int? MaxExpertsPerChunk { get; init; }

    /// <summary>The <see cref="QuantizeOptions"/> of this step on <paramref name="model"/>.</summary>
    public QuantizeOptions ToOptions(string model, string? output, ProfileRequest profile, bool dryRun = false) => new()
    {
        Model = model, Output = output, Bits = Bits, Size = Size, Method = Method, Format = Format, Granularity = Granularity,
        Uniform = Uniform, Candidates = Candidates, GroupSize = GroupSize, Symmetric = Symmetric, ActOrder = ActOrder,
        GateWeighted = GateWeighted, Alpha = Alpha, Beta = Beta, Gamma = Gamma, AttentionBits = AttentionBits,
        SharedExpertBits = SharedExpertBits, Propagate = Propagate, MaxMemoryBytes = MaxMemoryBytes, Layers = Layers,
        MaxExpertsPerChunk = MaxExpertsPerChunk, Profile = profile, DryRun = dryRun,
    };
}
