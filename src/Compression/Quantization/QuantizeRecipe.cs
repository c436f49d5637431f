using MoECompress.Compression.Calibration;
using MoECompress.Formats.Families;
using static TorchSharp.torch;

namespace MoECompress.Compression.Quantization;

/// <summary>
/// How one routed expert's projection is quantized, shared by the sensitivity measurement and the written output so that
/// both see the same weights: the method (RTN, or GPTQ with the profile's Hessians: Σxxᵀ over the expert's routed tokens
/// for gate_proj/up_proj, Σhhᵀ for down_proj, or their gate-weighted forms, MoEQuant — collected for the layer being
/// quantized, never stored), the group size and symmetry, and the GPTQ settings. Experts cold in the profile, or with
/// fewer than <see cref="MinGptqTokens"/> tokens, fall back to RTN.
/// </summary>
public sealed record QuantizeRecipe
{
    /// <summary>RTN or GPTQ.</summary>
    public QuantizeMethod Method { get; init; } = QuantizeMethod.Gptq;
    /// <summary>Input columns per scale/zero group (−1 = one group per row).</summary>
    public int GroupSize { get; init; } = 128;
    /// <summary>Symmetric quantization (no zero point).</summary>
    public bool Symmetric { get; init; }
    /// <summary>GPTQ act-order: columns by decreasing Hessian diagonal.</summary>
    public bool ActOrder { get; init; }
    /// <summary>Use the gate-weighted Hessians Σ g·x xᵀ (MoEQuant) instead of the plain ones.</summary>
    public bool GateWeighted { get; init; }
    /// <summary>GPTQ dampening as a fraction of the mean Hessian diagonal.</summary>
    public double DampPercent { get; init; } = 0.01;
    /// <summary>GPTQ block size (columns updated together).</summary>
    public int BlockSize { get; init; } = 128;
    /// <summary>Fewest routed tokens an expert's Hessian must hold for GPTQ; fewer fall back to RTN.</summary>
    public long MinGptqTokens { get; init; } = 16;

    /// <summary>The scheme at <paramref name="bits"/> bits.</summary>
    public QuantizationScheme Scheme(int bits) => new(bits, GroupSize, Symmetric);

    /// <summary>The Hessian kinds GPTQ reads with this recipe (gate/up input and down_proj input, plain or gate-weighted);
    /// empty for RTN.</summary>
    public IReadOnlyList<HessianKind> HessianKinds => Method != QuantizeMethod.Gptq ? []
        : GateWeighted ? [HessianKind.InputWeighted, HessianKind.DownWeighted] : [HessianKind.Input, HessianKind.Down];

    /// <summary>
    /// Why expert <paramref name="expert"/> of <paramref name="layer"/> cannot use GPTQ (null when it can, or when the
    /// method is RTN): cold by <paramref name="cold"/> (a profile's coverage, or the threshold rule), or fewer than <see cref="MinGptqTokens"/> routed tokens in
    /// the layer pass that collected its Hessians (<paramref name="tokens"/>).
    /// </summary>
    public string? FallbackReason(ColdExpertRule? cold, int layer, int expert, long tokens)
    {
        if (Method != QuantizeMethod.Gptq) return null;
        if (cold is not null && cold.IsCold(layer, expert, tokens))
            return $"cold: {tokens} routed tokens, threshold {cold.Threshold:0.#}";
        if (tokens < MinGptqTokens) return $"{tokens} routed tokens, fewer than {MinGptqTokens}";
        return null;
    }

    /// <summary>The Hessians GPTQ uses for one expert, or null when it falls back to RTN (<see cref="FallbackReason"/>).</summary>
    public ExpertHessians? HessiansFor(ColdExpertRule? cold, int layer, ExpertHessians? collected) =>
        collected is not null && FallbackReason(cold, layer, collected.Expert, collected.Tokens) is null ? collected : null;

    /// <summary>
    /// Quantizes one projection [out, in] (float32) at <paramref name="bits"/>: GPTQ with the matching Hessian when
    /// <paramref name="hessians"/> is given, RTN otherwise. The caller disposes the result.
    /// </summary>
    public QuantizedMatrix Quantize(Tensor weight, ExpertProjection projection, int bits, ExpertHessians? hessians)
    {
        ArgumentNullException.ThrowIfNull(weight);
        var scheme = Scheme(bits);
        if (hessians is null) return RtnQuantizer.Quantize(weight, scheme);
        var kind = projection switch
        {
            ExpertProjection.Down => GateWeighted ? HessianKind.DownWeighted : HessianKind.Down,
            ExpertProjection.Gate or ExpertProjection.Up => GateWeighted ? HessianKind.InputWeighted : HessianKind.Input,
            _ => throw new ArgumentOutOfRangeException(nameof(projection), projection, "quantize gate, up or down separately"),
        };
        return GptqQuantizer.Quantize(weight, hessians.Matrix(kind), hessians.Tokens, scheme,
            new GptqOptions { DampPercent = DampPercent, BlockSize = BlockSize, ActOrder = ActOrder });
    }
}
