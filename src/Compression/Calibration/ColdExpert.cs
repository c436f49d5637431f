namespace MoECompress.Compression.Calibration;

/// <summary>A routed expert that received fewer calibration tokens than the cold threshold: statistics that need
/// routed tokens (Hessians, REAP, mean output) are unreliable for it and later steps should fall back.</summary>
/// <param name="Layer">Decoder layer index.</param>
/// <param name="Expert">Expert index within the layer.</param>
/// <param name="RoutedTokens">Tokens routed to it during calibration.</param>
public sealed record ColdExpert(int Layer, int Expert, long RoutedTokens);
