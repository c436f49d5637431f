using static TorchSharp.torch;

namespace MoECompress.Compression.Substitution;

/// <summary>How <see cref="CompressedExpertTrainer"/> trains one layer's vectors.</summary>
public sealed record CompressedExpertTraining
{
    /// <summary>Adam steps per MoE layer (default 200).</summary>
    public int Steps { get; init; } = 200;
    /// <summary>Adam learning rate (default 0.01; the vectors start at 1).</summary>
    public double LearningRate { get; init; } = 0.01;
    /// <summary>Tokens per step, drawn without replacement each pass (default 4096; ≥ the token count: full batch).</summary>
    public int BatchTokens { get; init; } = 4096;
    /// <summary>Seed of the mini-batch order.</summary>
    public int Seed { get; init; }
    /// <summary>Where the training runs (<see cref="TrainingDevice.Resolve"/>); the vectors come back on the CPU.</summary>
    public Device Device { get; init; } = CPU;

    internal void Validate()
    {
        if (Steps < 0) throw new ArgumentOutOfRangeException(nameof(Steps), Steps, "must not be negative");
        if (!(LearningRate > 0) || double.IsInfinity(LearningRate)) throw new ArgumentOutOfRangeException(nameof(LearningRate), LearningRate, "must be positive");
        if (BatchTokens <= 0) throw new ArgumentOutOfRangeException(nameof(BatchTokens), BatchTokens, "must be positive");
    }
}

/// <summary>What training one layer did.</summary>
/// <param name="Layer">Decoder layer.</param>
/// <param name="Tokens">Calibration tokens trained on.</param>
/// <param name="Loss">Relative squared error ‖ŷ − y‖² / ‖y‖² of the routed output on each step's batch, before that step's update.</param>
/// <param name="InitialError">Relative error over all tokens with vectors of ones (= top-k lowered by aux).</param>
/// <param name="FinalError">Relative error over all tokens with the trained vectors.</param>
/// <param name="Seconds">Wall time of the training loop (the two full-data measurements excluded).</param>
public sealed record LayerTrainingResult(int Layer, long Tokens, IReadOnlyList<double> Loss, double InitialError, double FinalError, double Seconds)
{
    /// <summary>Token-steps per second (tokens in a batch × steps / seconds).</summary>
    public double TokensPerSecond(int batchTokens) =>
        Seconds <= 0 ? 0 : Math.Min(batchTokens, Tokens) * (double)Loss.Count / Seconds;
}
