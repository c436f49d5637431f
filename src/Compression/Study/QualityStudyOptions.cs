namespace MoECompress.Compression.Study;

/// <summary>
/// Options of <see cref="QualityStudy.Run"/>: the one run behind the quality tables of the README — every pruning
/// method and both merging methods at each reduction, one task-adaptive case, and uniform vs mixed-precision
/// quantization, each evaluated against the original on held-out text of every bundled domain.
/// </summary>
public sealed record QualityStudyOptions
{
    /// <summary>Model to compress (default: the bundled demo model).</summary>
    public string? Model { get; init; }
    /// <summary>Working folder for the compressed checkpoints and the report (created; must not exist).</summary>
    public required string Output { get; init; }
    /// <summary>Calibration sequences of the general profile.</summary>
    public int Samples { get; init; } = 32;
    /// <summary>Tokens per calibration sequence.</summary>
    public int SeqLen { get; init; } = 256;
    /// <summary>Held-out tokens evaluated per domain.</summary>
    public int EvalTokensPerDomain { get; init; } = 2048;
    /// <summary>Expert reductions of the pruning and merging tables.</summary>
    public IReadOnlyList<double> Ratios { get; init; } = [0.25, 0.5];
    /// <summary>Domain whose training text makes the task profile of the task-adaptive case (a file name under calibration/train without extension).</summary>
    public string TaskDomain { get; init; } = "github_oss_with_stack";
    /// <summary>Group size of the quantization table (the demo model's 192/384 columns are not multiples of 128).</summary>
    public int GroupSize { get; init; } = 64;
    /// <summary>Sections to run: "prune", "merge", "task", "quantize", "propagation" (GPTQ and pruning with compressed vs original propagation), "substitute" (compressed experts, N = k/2, vs reduced top-k); the last two are not in the default set.</summary>
    public IReadOnlyList<string> Sections { get; init; } = ["prune", "merge", "task", "quantize"];
    /// <summary>Keep the compressed checkpoints (default: delete each after its evaluation).</summary>
    public bool KeepCheckpoints { get; init; }
}
