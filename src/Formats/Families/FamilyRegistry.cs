using System.Text.Json.Nodes;
using MoECompress.Formats.Errors;

namespace MoECompress.Formats.Families;

/// <summary>
/// The one place model families are registered. <see cref="Detect"/> picks the family of a config.json; an
/// unsupported architecture is an InvalidConfig error listing what is supported.
/// </summary>
public static class FamilyRegistry
{
    /// <summary>Every supported family, in detection order.</summary>
    public static IReadOnlyList<IMoEFamily> All { get; } =
    [
        new MixtralFamily(),
        new PhiMoEFamily(),
        new GraniteMoEFamily(),
        new OlmoeFamily(),
        new Qwen2MoeFamily(),
        new Qwen3MoeFamily(),
        new Qwen35MoeFamily(),
        new DeepSeekMoEFamily(),
        new DeepSeekV2Family(),
        new DeepSeekV3Family(),
        new Glm4MoeFamily(),
        new GptOssFamily(),
        new MiniCpmMoEFamily(),
    ];

    /// <summary>Every architecture name some family claims, in registry order.</summary>
    public static IReadOnlyList<string> SupportedArchitectures { get; } = All.SelectMany(f => f.Architectures).Distinct().ToList();

    /// <summary>The family whose <see cref="IMoEFamily.Matches"/> accepts <paramref name="config"/>.</summary>
    public static IMoEFamily Detect(JsonObject config, string configPath)
    {
        foreach (var family in All)
            if (family.Matches(config)) return family;

        string what;
        if (config["architectures"] is JsonArray { Count: > 0 } || MoEFamilyBase.ModelTypeOf(config) is not null)
        {
            what = $"architecture '{MoEFamilyBase.ArchitectureOf(config)}'";
            if (MoEFamilyBase.ModelTypeOf(config) is { } mt) what += $" (model_type '{mt}')";
            what += " is not a supported MoE model";
        }
        else
        {
            what = "has neither 'architectures' nor 'model_type', so the model family is unknown";
        }
        throw new MoeCompressException(ErrorKind.InvalidConfig,
            $"{configPath}: {what}; supported architectures: {string.Join(", ", SupportedArchitectures)}");
    }

    /// <summary>The family with this <see cref="IMoEFamily.Name"/> (case-insensitive).</summary>
    public static IMoEFamily Get(string name) =>
        All.FirstOrDefault(f => string.Equals(f.Name, name, StringComparison.OrdinalIgnoreCase))
        ?? throw new MoeCompressException(ErrorKind.Usage,
            $"unknown model family '{name}'; known families: {string.Join(", ", All.Select(f => f.Name))}");

    /// <summary>Detects the family and reads the MoE facts in one step.</summary>
    public static (IMoEFamily Family, MoEConfig MoE) Read(JsonObject config, string configPath)
    {
        var family = Detect(config, configPath);
        return (family, family.ReadConfig(config, configPath));
    }
}
