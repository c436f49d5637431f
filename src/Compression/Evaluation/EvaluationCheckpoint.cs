using MoECompress.Compression.Model;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Families;

namespace MoECompress.Compression.Evaluation;

/// <summary>
/// A model folder opened for a forward pass: the checkpoint opened and validated (<see cref="ModelCheckpoint"/>) and a
/// <see cref="ModelEngine"/> bound to it. Owns the open checkpoint.
/// </summary>
internal sealed class EvaluationCheckpoint : IDisposable
{
    private EvaluationCheckpoint(ModelCheckpoint checkpoint, ModelEngine engine)
    {
        Checkpoint = checkpoint;
        Engine = engine;
    }

    public ModelCheckpoint Checkpoint { get; }
    public ModelEngine Engine { get; }
    public string Directory => Checkpoint.Directory;

    public EvaluatedModel Describe() =>
        new(Checkpoint.Tensors is Formats.Gguf.GgufTensorSource g ? g.File.Path : Directory, Engine.Family.Name, Engine.MoE.NumExperts, Engine.Config.NumLayers,
            Checkpoint.Tensors switch
            {
                Formats.Quantized.QuantizedTensorSource packed => packed.StoredTensorBytes, // the packed bytes on disk, not the dequantized view
                Formats.Gguf.GgufTensorSource gguf => gguf.StoredTensorBytes,
                var t => t.Names.Sum(n => t.GetInfo(n).ByteLength),
            });

    /// <summary>Opens <paramref name="directory"/>; <paramref name="role"/> ("model", "--base") names it in errors.</summary>
    /// <exception cref="MoeCompressException">Missing folder (Usage), bad config or checkpoint, or a family without a forward pass (Infeasible).</exception>
    public static EvaluationCheckpoint Open(string directory, string role, Substitution.ExpertSkipping? skipping = null)
    {
        var dir = Path.GetFullPath(directory);
        if (!System.IO.Directory.Exists(dir) && !Formats.Gguf.GgufTensorSource.IsGgufPath(dir))
            throw new MoeCompressException(ErrorKind.Usage, $"{role} {dir}: model folder not found");
        var checkpoint = ModelCheckpoint.Open(dir);
        try
        {
            var engine = new ModelEngine(checkpoint.Tensors, checkpoint.Family, checkpoint.MoE, checkpoint.Config, checkpoint.ConfigPath)
            {
                Skipping = skipping,
            };
            return new EvaluationCheckpoint(checkpoint, engine);
        }
        catch
        {
            checkpoint.Dispose();
            throw;
        }
    }

    public void Dispose() => Checkpoint.Dispose();
}
