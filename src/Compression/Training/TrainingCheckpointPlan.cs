namespace MoECompress.Compression.Training;

/// <summary>
/// How <see cref="ReferenceModelTrainer.TrainModel"/> checkpoints: into <paramref name="Store"/>, recording
/// <paramref name="Options"/> (the fingerprint a resume must match), starting from checkpoint
/// <paramref name="ResumeFrom"/> when it is set (its options already checked).
/// </summary>
public sealed record TrainingCheckpointPlan(TrainingCheckpoints Store, List<KeyValuePair<string, string>> Options, string? ResumeFrom);
