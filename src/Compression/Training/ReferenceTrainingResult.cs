namespace MoECompress.Compression.Training;

/// <summary>Summary of a finished <see cref="ReferenceModelTrainer.Train"/> run.</summary>
public sealed record ReferenceTrainingResult(string OutputDirectory, long TokensSeen, int Steps, double FinalLoss,
    IReadOnlyList<TrainingLogRow> Log, IReadOnlyList<(string Domain, long Tokens)> TrainingTokensPerDomain);
