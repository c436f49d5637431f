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

    /// <summary>
    /// Completes what config.json cannot say from the tensor names of the checkpoint: fused vs per-expert experts,
    /// MXFP4 storage, the module prefix. Returns <paramref name="config"/> unchanged when nothing differs.
    /// </summary>
    MoEConfig ResolveLayout(MoEConfig config, IReadOnlyCollection<string> tensorNames) => config;

    /// <summary>The role of a tensor name, or Role=Other when the family does not know it.</summary>
    TensorRoleInfo Classify(string tensorName, MoEConfig config);

    /// <summary>
    /// Router weight [E, H] of a decoder or MTP layer. (The contract's first draft had RouterWeightName(int layer): the name
    /// depends on the config for nested multimodal layouts, model.language_model., and for MTP layers stored under their
    /// own prefix, mtp.layers.k.)
    /// </summary>
    string RouterWeightName(int layer, MoEConfig config);
    string? RouterBiasName(int layer, MoEConfig config);
    string? CorrectionBiasName(int layer, MoEConfig config);

    /// <summary>Where the given projection of a routed expert is stored (never GateUp: ask for Gate or Up).</summary>
    ExpertTensorRef ExpertTensor(int layer, int expert, ExpertProjection projection, MoEConfig config);

    /// <summary>
    /// Prefix of the compressed-expert vectors of a layer's MoE block (see <see cref="CompressedExpertsConfig"/>), e.g.
    /// "model.layers.3.block_sparse_moe.compressed_experts.".
    /// </summary>
    string CompressedExpertsPrefix(int layer, MoEConfig config) =>
        throw new NotSupportedException($"family {Name} names no compressed-expert vectors");
}
