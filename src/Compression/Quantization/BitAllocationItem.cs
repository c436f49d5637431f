namespace MoECompress.Compression.Quantization;

/// <summary>
/// One routed expert offered to <see cref="BitAllocator"/>: its size, its router statistics and its measured
/// sensitivity ε_b (the MoE-block output error with this expert alone quantized to b bits) for every candidate width.
/// </summary>
/// <param name="Layer">Decoder layer index (the unit of <see cref="BitAllocationGranularity.Layer"/>).</param>
/// <param name="Expert">Expert index within the layer.</param>
/// <param name="Parameters">Weights that are quantized (gate + up + down): the bit budget counts b × this.</param>
/// <param name="Frequency">φ: fraction of calibration tokens that select the expert.</param>
/// <param name="RoutingWeight">w: the expert's activation weight (MC-MoE: router score mass over the tokens that select
/// it; any common scale, e.g. per token, since a constant factor does not change the choice).</param>
/// <param name="Errors">ε_b for every candidate width b (width → relative output error, ≥ 0).</param>
/// <param name="Bytes">Stored bytes of the expert at each candidate width (codes plus scales, zeros, indices);
/// required for a byte budget (<see cref="BitAllocatorOptions.BudgetBytes"/>), ignored otherwise.</param>
/// <param name="FixedBits">Pin the expert to this width (e.g. a super expert at the highest width); honoured with
/// <see cref="BitAllocationGranularity.Expert"/> only. Must be one of the candidates.</param>
public sealed record BitAllocationItem(
    int Layer,
    int Expert,
    long Parameters,
    double Frequency,
    double RoutingWeight,
    IReadOnlyDictionary<int, double> Errors,
    IReadOnlyDictionary<int, long>? Bytes = null,
    int? FixedBits = null);
