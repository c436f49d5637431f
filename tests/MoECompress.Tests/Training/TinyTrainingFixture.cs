using MoECompress.Compression.Training;

namespace MoECompress.Tests.Training;

/// <summary>Tiny Mixtral training configurations and synthetic corpora for fast tests.</summary>
internal static class TinyTrainingFixture
{
    public const int Vocabulary = 64;

    public static ReferenceModelOptions Options(int steps = 3, long seed = 7, string output = "unused") => new()
    {
        TrainDataDirectory = "unused",
        TokenizerModelPath = "unused",
        OutputDirectory = output,
        Layers = 2,
        HiddenSize = 16,
        IntermediateSize = 24,
        Experts = 4,
        TopK = 2,
        AttentionHeads = 4,
        KeyValueHeads = 2,
        SequenceLength = 12,
        BatchSize = 3,
        Steps = steps,
        WarmupSteps = 1,
        LearningRate = 1e-2,
        MinLearningRate = 1e-3,
        LogEvery = 1,
        Seed = seed,
        Bf16Matmuls = false,
    };

    /// <summary>Two "domains" of structured token streams (repeating patterns, so there is something to learn).</summary>
    public static TrainingCorpus Corpus(int sequenceLength, long seed)
    {
        var a = Enumerable.Range(0, 400).Select(i => 1 + (i * 7 % 13)).ToArray();
        var b = Enumerable.Range(0, 400).Select(i => 20 + (i * 5 % 31)).ToArray();
        return new TrainingCorpus([new DomainTokens("a", a, 1), new DomainTokens("b", b, 1)], sequenceLength, seed);
    }

    public static Dictionary<string, float[]> Weights(ReferenceTrainingModel model) =>
        model.NamedHuggingFaceTensors().ToDictionary(t => t.Name, t => t.Tensor.detach().contiguous().data<float>().ToArray());
}
