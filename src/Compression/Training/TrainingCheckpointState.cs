namespace MoECompress.Compression.Training;

/// <summary>
/// Everything of a reference-model training run at a step boundary that is not a tensor (training-state.json of a
/// checkpoint): the steps completed, the options that must not change, the log rows so far, the partial sums of the
/// row being accumulated and the training wall time. The data order needs no state: batch <c>s</c> is a pure function of
/// the step index and the seed (<see cref="TrainingCorpus.Batch"/>).
/// </summary>
public sealed record TrainingCheckpointState
{
    public const int CurrentFormat = 1;

    public int Format { get; init; } = CurrentFormat;

    /// <summary>Optimiser steps completed; the resumed run starts with step index <see cref="Step"/>.</summary>
    public required int Step { get; init; }

    /// <summary><see cref="ReferenceModelOptions.ResumeFingerprint"/> plus the tokenizer's and the tokens' SHA-256.</summary>
    public required List<KeyValuePair<string, string>> Options { get; init; }

    /// <summary>The rows of training-loss.csv written so far.</summary>
    public required List<TrainingLogRow> Log { get; init; }

    /// <summary>Steps, and sums of cross-entropy, load-balancing and z-loss, since the last log row.</summary>
    public int RowSteps { get; init; }
    public double RowCrossEntropySum { get; init; }
    public double RowLoadBalancingSum { get; init; }
    public double RowZLossSum { get; init; }

    /// <summary>Training wall time so far (sessions added up, gaps between them left out) and that of the last row.</summary>
    public double ElapsedSeconds { get; init; }
    public double RowStartSeconds { get; init; }

    /// <summary>AdamW's step count of every parameter (TorchSharp parameter name → count).</summary>
    public required Dictionary<string, long> OptimizerSteps { get; init; }
}
