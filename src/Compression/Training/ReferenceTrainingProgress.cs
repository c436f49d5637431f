namespace MoECompress.Compression.Training;

/// <summary>Progress of a reference-model run: a phase message, and after each logged step its <see cref="TrainingLogRow"/>.</summary>
public sealed record ReferenceTrainingProgress(string Message, TrainingLogRow? Row = null, int TotalSteps = 0);
