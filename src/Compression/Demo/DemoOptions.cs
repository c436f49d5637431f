namespace MoECompress.Compression.Demo;

/// <summary>Options of <see cref="DemoRunner.RunAsync"/> (the <c>demo</c> command).</summary>
public sealed record DemoOptions
{
    /// <summary>Model folder; null: the bundled demo model (<see cref="BundledData.DemoModel"/>).</summary>
    public string? Model { get; init; }

    /// <summary>Where to keep the calibration profile; null: a temporary folder removed at the end.</summary>
    public string? ProfileOut { get; init; }

    /// <summary>Calibration sequences drawn from the bundled calibration set.</summary>
    public int Samples { get; init; } = 16;

    /// <summary>Tokens per calibration sequence.</summary>
    public int SeqLen { get; init; } = 256;

    /// <summary>Held-out tokens evaluated per domain (the start of each held-out file).</summary>
    public int MaxTokensPerDomain { get; init; } = 2048;

    /// <summary>Also prune, merge and quantize the model with the default settings and compare each with the original (default on).</summary>
    public bool Compress { get; init; } = true;

    /// <summary>Where to keep the compressed checkpoints (pruned/, merged/, quantized/); null: a temporary folder removed at the end.</summary>
    public string? OutputDir { get; init; }

    /// <summary>Evaluation window (tokens); stride is half of it.</summary>
    public int Context { get; init; } = 256;
}
