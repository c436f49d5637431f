using System.Text.Json;
using System.Text.Json.Nodes;
using MoECompress.Formats.Errors;

namespace MoECompress.Formats.Families;

/// <summary>
/// The <c>compressed_experts</c> key of a substituted checkpoint (Compressed Experts, He et al. 2025): of each token's
/// top-k routed experts only the first k − <see cref="Aux"/> by routing weight are computed; the last
/// <see cref="Aux"/> ("auxiliary") are replaced by three learned vectors per expert that modulate the computed
/// experts. The vectors are stored next to each MoE block under the names of <see cref="TensorNames"/>. Stock
/// runtimes ignore the key and run the plain top-k model; only moe-compress's engine runs this graph.
/// </summary>
/// <param name="Aux">Auxiliary (not computed) experts per token, 1 ≤ Aux &lt; top-k.</param>
public sealed record CompressedExpertsConfig(int Aux)
{
    /// <summary>The config.json key.</summary>
    public const string Key = "compressed_experts";

    /// <summary>Vector c1 [E, H]: multiplies the gate_proj input of the computed experts.</summary>
    public const string GateInputScale = "gate_input_scale";
    /// <summary>Vector c2 [E, I]: multiplies the down_proj input act(gate)·up of the computed experts.</summary>
    public const string IntermediateScale = "intermediate_scale";
    /// <summary>Vector c3 [E, H]: multiplies the up_proj input of the computed experts.</summary>
    public const string UpInputScale = "up_input_scale";

    /// <summary>The three tensor names of a layer (c1, c2, c3), under the family's prefix for the layer's MoE block.</summary>
    public static (string GateInput, string Intermediate, string UpInput) TensorNames(IMoEFamily family, int layer, MoEConfig config)
    {
        var prefix = family.CompressedExpertsPrefix(layer, config);
        return (prefix + GateInputScale, prefix + IntermediateScale, prefix + UpInputScale);
    }

    /// <summary>The key as written into config.json.</summary>
    public JsonObject ToJson() => new() { ["aux"] = Aux };

    /// <summary>
    /// Reads <c>compressed_experts</c> from <paramref name="config"/>; null when absent. Throws InvalidConfig naming the
    /// file and key when it is not an object with an integer <c>aux</c> in 1 … top-k − 1.
    /// </summary>
    public static CompressedExpertsConfig? Read(JsonObject config, string configPath, int topK)
    {
        if (!config.TryGetPropertyValue(Key, out var node) || node is null) return null;
        if (node is not JsonObject obj || obj["aux"] is not JsonValue v || v.GetValueKind() != JsonValueKind.Number ||
            !v.TryGetValue<int>(out var aux))
            throw new MoeCompressException(ErrorKind.InvalidConfig,
                $"{configPath}: key '{Key}' must be an object {{\"aux\": N}} with an integer N, found {node.ToJsonString()}");
        if (aux < 1 || aux >= topK)
            throw new MoeCompressException(ErrorKind.InvalidConfig,
                $"{configPath}: key '{Key}.aux' = {aux} must be between 1 and top-k − 1 = {topK - 1}");
        return new CompressedExpertsConfig(aux);
    }
}
