using MoECompress.Compression.Model;
using MoECompress.Compression.Training;
using MoECompress.Formats.Families;
using TorchSharp;
using static TorchSharp.torch;

namespace MoECompress.Tests.Training;

/// <summary>
/// The training model and the inference engine are independent implementations of HF Mixtral; a checkpoint exported
/// by the trainer must give the same logits through both.
/// </summary>
public sealed class EngineAgreementTests : IDisposable
{
    private readonly string root = Path.Combine(Path.GetTempPath(), "moe-train-engine-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(root)) Directory.Delete(root, recursive: true);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void ExportedModelGivesTheSameLogitsInTheEngine(bool tied)
    {
        var dir = Path.Combine(root, "model");
        // Large initial weights so that attention, routing and the experts all shape the logits.
        var options = TinyTrainingFixture.Options() with
        {
            TokenizerModelPath = TrainingRepository.MistralTokenizerModel,
            InitializerRange = 0.3,
            TieWordEmbeddings = tied,
            SequenceLength = 32,
            RopeTheta = 10000,
        };
        var encoder = new SentencePieceEncoder(options.TokenizerModelPath);
        using (var model = new MixtralTrainingModel(options, encoder.VocabularySize, seed: 23))
            ReferenceCheckpointExporter.Export(model, encoder, options.TokenizerModelPath, dir);

        using var trainingModel = MixtralCheckpointLoader.Load(dir);
        var ids = encoder.Encode("The experts of a mixture route each token; def f(x): return x * 2").Prepend(encoder.BosId).Take(24).ToArray();
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var expected = trainingModel.Forward(torch.tensor(ids.Select(i => (long)i).ToArray(), [1, ids.Length])).Logits[0];

        AssertEngineLogits(dir, ids, expected, tolerance: 1e-3f * Math.Max(1f, expected.abs().max().item<float>()));
    }

    /// <summary>
    /// Runs <paramref name="ids"/> through the inference engine on the checkpoint in <paramref name="dir"/> and asserts
    /// that its logits differ from <paramref name="expected"/> [T, V] by at most <paramref name="tolerance"/> (and that
    /// the expected logits are not too flat to tell).
    /// </summary>
    internal static void AssertEngineLogits(string dir, int[] ids, Tensor expected, float tolerance)
    {
        using var scope = NewDisposeScope();
        using var checkpoint = ModelCheckpoint.Open(dir);
        var engine = new ModelEngine(checkpoint.Tensors, checkpoint.Family, checkpoint.MoE, checkpoint.Config, checkpoint.ConfigPath);
        using var resident = engine.LoadResident();
        var actual = resident.Forward(ids);

        Assert.Equal(expected.shape, actual.shape);
        var scale = expected.abs().max().item<float>();
        var maxDiff = (expected - actual).abs().max().item<float>();
        Assert.True(scale > 0.05f, $"logits are too flat to compare (max |logit| {scale})");
        Assert.True(maxDiff <= tolerance, $"logits differ by up to {maxDiff} (max |logit| {scale}, tolerance {tolerance})");
    }
}
