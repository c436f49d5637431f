namespace MoECompress.Compression.Training;

/// <summary>The outcome of <see cref="ReferenceModelTrainer.TrainModel"/>: the model (fp32 master weights; the caller
/// disposes it), the logged rows, tokens seen and the corpus it was trained on.</summary>
public sealed record TrainedReferenceModel(ReferenceTrainingModel Model, IReadOnlyList<TrainingLogRow> Log, long TokensSeen,
    TrainingCorpus Corpus) : IDisposable
{
    public void Dispose() => Model.Dispose();
}
