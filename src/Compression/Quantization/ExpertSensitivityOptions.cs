using MoECompress.Formats.Errors;

namespace MoECompress.Compression.Quantization;

/// <summary>Settings of <see cref="ExpertSensitivity.Measure"/>: the widths to try and how experts are quantized.</summary>
public sealed record ExpertSensitivityOptions
{
    /// <summary>Widths at which every expert's error is measured. Default {2, 3, 4}.</summary>
    public IReadOnlyList<int> Candidates { get; init; } = [2, 3, 4];
    /// <summary>How experts are quantized (the same recipe the output is written with).</summary>
    public QuantizeRecipe Recipe { get; init; } = new();
    /// <summary>Tokens per micro-batch of the streamed calibration run.</summary>
    public int MicroBatch { get; init; } = 2048;

    /// <summary>Throws <see cref="MoeCompressException"/> (Usage) naming the first bad setting.</summary>
    public void Validate()
    {
        if (Candidates.Count == 0) throw new MoeCompressException(ErrorKind.Usage, "--candidates: give at least one width");
        foreach (var b in Candidates) Recipe.Scheme(b).Validate("--candidates");
        if (MicroBatch < 1) throw new MoeCompressException(ErrorKind.Usage, $"--micro-batch {MicroBatch} must be at least 1");
    }
}
