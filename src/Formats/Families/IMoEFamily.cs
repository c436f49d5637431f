using System.Text.Json.Nodes;

namespace MoECompress.Formats.Families;

/// <summary>
/// A model family plug-in: recognises its config.json, reads the MoE facts, and maps tensor names to roles.
/// Families are registered in one place (<c>FamilyRegistry</c>).
/// </summary>
public interface IMoEFamily
{
    /// <summary>Short name used in reports and errors ("mixtral", "deepseek-v3", ...).</summary>
    string Name { get; }

    /// <summary>config.json "architectures" / "model_type" values this family claims.</summary>
    IReadOnlyList<string> Architectures { get; }

    bool Matches(JsonObject config);

    /// <summary>Reads the MoE facts; throws MoeCompressException(InvalidConfig) naming the key that is missing or wrong.</summary>
    MoEConfig ReadConfig(JsonObject config, string configPath);

    /// <summary>The role of a tensor name, or Role=Other when the family does not know it.</summary>
    TensorRoleInfo Classify(string tensorName, MoEConfig config);

    string RouterWeightName(int layer);
    string? RouterBiasName(int layer, MoEConfig config);
    string? CorrectionBiasName(int layer, MoEConfig config);

    /// <summary>Where the given projection of a routed expert is stored (never GateUp: ask for Gate or Up).</summary>
    ExpertTensorRef ExpertTensor(int layer, int expert, ExpertProjection projection, MoEConfig config);
}
