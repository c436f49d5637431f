using System.Text.Json.Nodes;

namespace MoECompress.Formats.Families;

/// <summary>
/// Reads and writes config.json values by dotted path ("num_experts", "text_config.num_experts"), the form
/// <see cref="MoEConfig.ExpertCountKeys"/> and <see cref="MoEConfig.TopKKeys"/> use.
/// </summary>
public static class ConfigKeys
{
    /// <summary>The node at <paramref name="dottedPath"/>, or null when any part of the path is absent.</summary>
    public static JsonNode? Get(JsonObject config, string dottedPath)
    {
        JsonNode? node = config;
        foreach (var part in dottedPath.Split('.'))
        {
            if (node is not JsonObject obj || !obj.TryGetPropertyValue(part, out node)) return null;
        }
        return node;
    }

    /// <summary>True when <paramref name="dottedPath"/> exists (its value may be JSON null).</summary>
    public static bool Contains(JsonObject config, string dottedPath)
    {
        var parts = dottedPath.Split('.');
        JsonObject obj = config;
        for (int i = 0; i < parts.Length - 1; i++)
        {
            if (!obj.TryGetPropertyValue(parts[i], out var next) || next is not JsonObject o) return false;
            obj = o;
        }
        return obj.ContainsKey(parts[^1]);
    }

    /// <summary>Sets the value at <paramref name="dottedPath"/>; the parent objects must exist.</summary>
    public static void Set(JsonObject config, string dottedPath, JsonNode? value)
    {
        var parts = dottedPath.Split('.');
        JsonObject obj = config;
        for (int i = 0; i < parts.Length - 1; i++)
        {
            if (!obj.TryGetPropertyValue(parts[i], out var next) || next is not JsonObject o)
                throw new KeyNotFoundException($"config has no object '{string.Join('.', parts[..(i + 1)])}'");
            obj = o;
        }
        obj[parts[^1]] = value;
    }
}
