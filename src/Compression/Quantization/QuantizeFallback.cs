namespace MoECompress.Compression.Quantization;

/// <summary>
/// A routed expert that calibration covered too thinly for GPTQ (cold in the profile's coverage report, or fewer Hessian
/// tokens than <see cref="QuantizeRecipe.MinGptqTokens"/>): it is quantized with round-to-nearest instead, and its
/// measured sensitivity rests on few (or no) tokens.
/// </summary>
/// <param name="Layer">Decoder layer.</param>
/// <param name="Expert">Expert index.</param>
/// <param name="RoutedTokens">Calibration tokens routed to it.</param>
/// <param name="Reason">Why it falls back ("cold: 3 routed tokens, threshold 16", ...).</param>
/// <param name="Method">What it is quantized with instead ("rtn"), or null when the method is RTN anyway.</param>
public sealed record QuantizeFallback(int Layer, int Expert, long RoutedTokens, string Reason, string? Method);
