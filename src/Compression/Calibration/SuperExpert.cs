namespace MoECompress.Compression.Calibration;

/// <summary>A routed expert whose largest |down_proj output| marks it as a super expert (never prune, merge or
/// quantize it coarsely; see <see cref="SuperExpertReport"/>).</summary>
/// <param name="Layer">Decoder layer index.</param>
/// <param name="Expert">Expert index within the layer.</param>
/// <param name="MaxAbsOutput">max over routed tokens of the largest |element| of the expert's output.</param>
public sealed record SuperExpert(int Layer, int Expert, double MaxAbsOutput);
