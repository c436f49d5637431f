using System.Text.Json.Nodes;

namespace MoECompress.Formats.Synthetic;

/// <summary>
/// Full-size config.json files of real MoE models, kept in code so synthetic fixtures follow their key names and
/// structure: the real files from tests/data/configs copied verbatim, and hand-written ones after published configs
/// (GraniteMoE, OLMoE, Phi-3.5-MoE, Qwen3-MoE, GPT-OSS).
/// </summary>
public static partial class ReferenceConfigs
{
    private static readonly Dictionary<string, string> ByName = new(StringComparer.OrdinalIgnoreCase)
    {
        ["Mixtral-8x7B-v0.1"] = Mixtral8x7BJson,
        ["DeepSeek-R1"] = DeepSeekR1Json,
        ["Qwen3.5-18B-REAP-A3B-Coding"] = Qwen35ReapJson,
        ["Qwen3.6-35B-A3B"] = Qwen36Json,
        ["Qwen3-Next-80B-A3B-Instruct"] = Qwen3Next80bJson,
        ["Qwen1.5-MoE-A2.7B"] = Qwen15MoEJson,
        ["DeepSeek-V2-Lite"] = DeepSeekV2LiteJson,
        ["deepseek-moe-16b"] = DeepSeekMoE16bJson,
        ["granite-3.0-1b-a400m-base"] = GraniteMoE1bJson,
        ["OLMoE-1B-7B-0924"] = Olmoe1b7bJson,
        ["Phi-3.5-MoE-instruct"] = Phi35MoEJson,
        ["Qwen3-30B-A3B"] = Qwen3Moe30bJson,
        ["gpt-oss-20b"] = GptOss20bJson,
        ["GLM-4.5"] = Glm45Json,
        ["Kimi-K2"] = KimiK2Json,
    };

    /// <summary>Model names (Hugging Face repository names without the owner).</summary>
    public static IReadOnlyList<string> Names { get; } = ByName.Keys.ToList();

    /// <summary>A fresh, mutable copy of the named model's config.json.</summary>
    public static JsonObject Load(string model) =>
        ByName.TryGetValue(model, out var json)
            ? (JsonObject)JsonNode.Parse(json)!
            : throw new KeyNotFoundException($"no reference config '{model}'; known: {string.Join(", ", Names)}");
}
