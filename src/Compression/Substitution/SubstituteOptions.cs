using MoECompress.Compression.Data;
using MoECompress.Formats.Safetensors;

namespace MoECompress.Compression.Substitution;

/// <summary>What <see cref="Substituter.Run"/> writes.</summary>
public enum SubstituteExport
{
    /// <summary>The original weights plus trained compressed-expert vectors and <c>compressed_experts</c> in config.json (runs in moe-compress only).</summary>
    CompressedExperts,
    /// <summary>A standard checkpoint with top-k lowered by <see cref="SubstituteOptions.Aux"/> (the baseline; no training).</summary>
    ReducedTopK,
}

/// <summary>
/// Options of <see cref="Substituter.Run"/> (the <c>moe-compress substitute</c> command): of each token's top-k routed
/// experts, the last <see cref="Aux"/> by routing weight are replaced by compressed experts trained on calibration text.
/// </summary>
public sealed record SubstituteOptions
{
    /// <summary>The input checkpoint folder (never modified).</summary>
    public required string Model { get; init; }
    /// <summary>The output checkpoint folder.</summary>
    public required string Output { get; init; }
    /// <summary>Auxiliary experts per token (n_ce), 1 ≤ Aux &lt; top-k.</summary>
    public int Aux { get; init; } = 1;
    /// <summary>What to write (default: the compressed experts).</summary>
    public SubstituteExport Export { get; init; } = SubstituteExport.CompressedExperts;
    /// <summary>Steps, learning rate, batch, seed, device of the per-layer training.</summary>
    public CompressedExpertTraining Training { get; init; } = new();
    /// <summary>Storage type of the written vectors: F32 (default), BF16 or F16.</summary>
    public SafetensorsDType VectorDType { get; init; } = SafetensorsDType.F32;
    /// <summary>Calibration text (.jsonl/.txt file or folder); null = the bundled calibration set.</summary>
    public string? Data { get; init; }
    /// <summary>How calibration sequences are drawn (default 128 × 512 tokens).</summary>
    public CalibrationDataOptions DataOptions { get; init; } = new();
    /// <summary>At most this many calibration tokens per layer are kept for training (evenly spaced; default 32,768).</summary>
    public int MaxTrainTokens { get; init; } = 32_768;
    /// <summary>Tokens per micro-batch of the streamed forward.</summary>
    public int MicroBatchTokens { get; init; } = 2048;
    /// <summary>Replace an existing output folder.</summary>
    public bool Overwrite { get; init; }
    /// <summary>Most tensor bytes per output shard.</summary>
    public long MaxShardBytes { get; init; } = 5_000_000_000;
}
