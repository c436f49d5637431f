using MoECompress.Compression.Model;

namespace MoECompress.Compression.Evaluation;

/// <summary>Window settings and engine settings of one <see cref="Evaluator.Measure"/> run.</summary>
/// <param name="Context">Tokens per window (≥ 2).</param>
/// <param name="Stride">Tokens between window starts (1 … Context).</param>
public sealed record EvaluationSettings(int Context, int Stride)
{
    /// <summary>How the windows are streamed through the layers (micro-batch size, hidden-state spilling).</summary>
    public StreamingOptions Streaming { get; init; } = new();

    /// <summary>
    /// Upper bound on the logits elements (rows × vocabulary) computed at once per model when scoring; the rows per
    /// chunk are also capped by <see cref="StreamingOptions.HeadChunkTokens"/>. Default 16 Mi floats (64 MiB).
    /// </summary>
    public long MaxLogitsElementsPerChunk { get; init; } = 16L << 20;
}
