using System.Text.Json;
using System.Text.Json.Nodes;
using MoECompress.Compression.Model;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Families;
using MoECompress.Formats.Safetensors;

namespace MoECompress.Compression.Evaluation;

/// <summary>
/// A model folder opened for a forward pass: config.json read and its family detected, the safetensors weights
/// memory-mapped, and a <see cref="ModelEngine"/> bound to them. Owns the open checkpoint.
/// </summary>
internal sealed class EvaluationCheckpoint : IDisposable
{
    private EvaluationCheckpoint(string directory, SafetensorsCheckpoint checkpoint, ModelEngine engine)
    {
        Directory = directory;
        Checkpoint = checkpoint;
        Engine = engine;
    }

    public string Directory { get; }
    public SafetensorsCheckpoint Checkpoint { get; }
    public ModelEngine Engine { get; }

    public EvaluatedModel Describe() =>
        new(Directory, Engine.Family.Name, Engine.MoE.NumExperts, Engine.Config.NumLayers, Checkpoint.TotalTensorBytes);

    /// <summary>Opens <paramref name="directory"/>; <paramref name="role"/> ("model", "--base") names it in errors.</summary>
    public static EvaluationCheckpoint Open(string directory, string role)
    {
        var dir = Path.GetFullPath(directory);
        if (!System.IO.Directory.Exists(dir))
            throw new MoeCompressException(ErrorKind.Usage, $"{role} {dir}: model folder not found");
        var configPath = Path.Combine(dir, "config.json");
        if (!File.Exists(configPath))
            throw new MoeCompressException(ErrorKind.InvalidConfig, $"{configPath}: config.json not found ({role} must be a Hugging Face model folder)");
        JsonObject config;
        try
        {
            config = JsonNode.Parse(File.ReadAllText(configPath)) as JsonObject
                     ?? throw new MoeCompressException(ErrorKind.InvalidConfig, $"{configPath}: not a JSON object");
        }
        catch (JsonException ex)
        {
            throw new MoeCompressException(ErrorKind.InvalidConfig, $"{configPath}: malformed JSON: {ex.Message}", ex);
        }
        catch (IOException ex)
        {
            throw new MoeCompressException(ErrorKind.Io, $"{configPath}: cannot read: {ex.Message}", ex);
        }

        var (family, moe) = FamilyRegistry.Read(config, configPath);
        ModelEngine.EnsureSupported(family, config); // fail before mapping the weights
        var checkpoint = SafetensorsCheckpoint.Open(dir);
        try
        {
            moe = family.ResolveLayout(moe, checkpoint.Names);
            var engine = new ModelEngine(checkpoint, family, moe, config, configPath);
            return new EvaluationCheckpoint(dir, checkpoint, engine);
        }
        catch
        {
            checkpoint.Dispose();
            throw;
        }
    }

    public void Dispose() => Checkpoint.Dispose();
}
