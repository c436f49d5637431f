using System.Text.Json;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Input;

namespace MoECompress.Compression.Tokenization;

/// <summary>
/// The special-token settings of a model folder, read from tokenizer_config.json and special_tokens_map.json
/// (either may be missing). A token that a file sets to null explicitly is recorded as "declared absent",
/// which differs from a key that no file mentions.
/// </summary>
public sealed record TokenizerConfigFile
{
    /// <summary>tokenizer_config.json's add_bos_token, or null when absent.</summary>
    public bool? AddBosToken { get; init; }

    /// <summary>tokenizer_config.json's add_eos_token, or null when absent.</summary>
    public bool? AddEosToken { get; init; }

    /// <summary>Content of bos_token when a file names one.</summary>
    public string? BosToken { get; init; }

    /// <summary>Content of eos_token when a file names one.</summary>
    public string? EosToken { get; init; }

    /// <summary>True when a file mentions bos_token at all (possibly as null).</summary>
    public bool BosDeclared { get; init; }

    /// <summary>True when a file mentions eos_token at all (possibly as null).</summary>
    public bool EosDeclared { get; init; }

    /// <summary>The files that were read, for error messages and reports.</summary>
    public IReadOnlyList<string> Sources { get; init; } = [];

    /// <summary>Reads the settings of <paramref name="modelDir"/>; returns an empty record when neither file exists.</summary>
    /// <exception cref="MoeCompressException">A file exists but is not a JSON object (ErrorKind.InvalidConfig).</exception>
    public static TokenizerConfigFile Read(string modelDir)
    {
        var result = new TokenizerConfigFile();
        var sources = new List<string>();
        // special_tokens_map.json first, so tokenizer_config.json (what transformers reads last) wins.
        foreach (var name in new[] { "special_tokens_map.json", "tokenizer_config.json" })
        {
            var path = Path.Combine(modelDir, name);
            if (!File.Exists(path)) continue;
            sources.Add(path);
            using var doc = ParseObject(path);
            var root = doc.RootElement;
            if (TryReadToken(root, "bos_token", path, out var bos)) result = result with { BosToken = bos, BosDeclared = true };
            if (TryReadToken(root, "eos_token", path, out var eos)) result = result with { EosToken = eos, EosDeclared = true };
            if (ReadBool(root, "add_bos_token", path) is { } addBos) result = result with { AddBosToken = addBos };
            if (ReadBool(root, "add_eos_token", path) is { } addEos) result = result with { AddEosToken = addEos };
        }
        return result with { Sources = sources };
    }

    private static JsonDocument ParseObject(string path)
    {
        var doc = StrictJson.ReadDocumentFile(path, new StrictJsonOptions
        {
            Kind = ErrorKind.InvalidConfig, AllowTrailingCommas = true, AllowComments = true, What = Path.GetFileName(path),
        });
        if (doc.RootElement.ValueKind != JsonValueKind.Object)
        {
            doc.Dispose();
            throw new MoeCompressException(ErrorKind.InvalidConfig, $"{path}: expected a JSON object at the top level");
        }
        return doc;
    }

    /// <summary>A special token is written either as a string or as an AddedToken object with "content".</summary>
    private static bool TryReadToken(JsonElement root, string key, string path, out string? content)
    {
        content = null;
        if (!root.TryGetProperty(key, out var value)) return false;
        switch (value.ValueKind)
        {
            case JsonValueKind.Null:
                return true;
            case JsonValueKind.String:
                content = value.GetString();
                return true;
            case JsonValueKind.Object when value.TryGetProperty("content", out var c) && c.ValueKind == JsonValueKind.String:
                content = c.GetString();
                return true;
            default:
                throw new MoeCompressException(ErrorKind.InvalidConfig,
                    $"{path}: \"{key}\" must be a string, null or an object with \"content\", not {value.ValueKind}");
        }
    }

    private static bool? ReadBool(JsonElement root, string key, string path)
    {
        if (!root.TryGetProperty(key, out var value) || value.ValueKind == JsonValueKind.Null) return null;
        return value.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw new MoeCompressException(ErrorKind.InvalidConfig, $"{path}: \"{key}\" must be true or false, not {value.ValueKind}"),
        };
    }

    internal static string FirstLine(string message)
    {
        var i = message.IndexOfAny(['\r', '\n']);
        return i < 0 ? message : message[..i];
    }
}
