using System.Text.Json.Nodes;

namespace MoECompress.Tests.Safetensors;

/// <summary>
/// Small well-formed checkpoints built byte by byte with <see cref="RawSafetensors"/> (not with the library under test),
/// plus the non-weight files a Hugging Face folder has. Public so other test folders can reuse them.
/// </summary>
public static class SafetensorsFixtures
{
    /// <summary>Shard 1 of the sharded fixture, tensors in data order (at least two; the corruptor relies on it).</summary>
    public static readonly string[] Shard1 =
        { "model.embed_tokens.weight", "model.layers.0.mlp.gate.weight", "model.layers.0.input_layernorm.weight" };

    /// <summary>Shard 2 of the sharded fixture, tensors in data order.</summary>
    public static readonly string[] Shard2 =
        { "model.layers.0.mlp.experts.0.w1.weight", "model.layers.0.mlp.experts.1.w1.weight", "lm_head.weight" };

    public const string Shard1Name = "model-00001-of-00002.safetensors";
    public const string Shard2Name = "model-00002-of-00002.safetensors";

    /// <summary>Files besides the weights that <see cref="CreateSharded"/> and <see cref="CreateSingle"/> write.</summary>
    public static readonly string[] AuxiliaryFiles =
    {
        "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
        "tokenizer.model", "chat_template.jinja", "README.md", "LICENSE", "extra/notes.txt",
    };

    /// <summary>Files that must never be copied as auxiliary files.</summary>
    public static readonly string[] NonAuxiliaryFiles = { "pytorch_model.bin", ".cache/huggingface/download.lock" };

    public static RawSafetensors.Entry Entry(string name, string dtype, long[] shape, int seed)
    {
        long count = 1;
        foreach (var d in shape) count *= d;
        int itemSize = dtype switch { "BF16" or "F16" => 2, "F32" => 4, "F64" or "I64" => 8, _ => 1 };
        var data = new byte[count * itemSize];
        new Random(seed).NextBytes(data);
        return new RawSafetensors.Entry(name, dtype, shape, data);
    }

    public static IReadOnlyList<RawSafetensors.Entry> Shard1Entries() => new[]
    {
        Entry(Shard1[0], "BF16", new long[] { 8, 4 }, 1),
        Entry(Shard1[1], "F32", new long[] { 4, 4 }, 2),
        Entry(Shard1[2], "F32", new long[] { 4 }, 3),
    };

    public static IReadOnlyList<RawSafetensors.Entry> Shard2Entries() => new[]
    {
        Entry(Shard2[0], "F16", new long[] { 6, 4 }, 4),
        Entry(Shard2[1], "F8_E4M3", new long[] { 6, 4 }, 5),
        Entry(Shard2[2], "BF16", new long[] { 8, 4 }, 6),
    };

    public static readonly IReadOnlyDictionary<string, string> PtMetadata = new Dictionary<string, string> { ["format"] = "pt" };

    /// <summary>A two-shard checkpoint with index and auxiliary files; returns every tensor's bytes.</summary>
    public static Dictionary<string, byte[]> CreateSharded(string directory)
    {
        Directory.CreateDirectory(directory);
        var s1 = Shard1Entries();
        var s2 = Shard2Entries();
        File.WriteAllBytes(Path.Combine(directory, Shard1Name), RawSafetensors.Build(s1, PtMetadata));
        File.WriteAllBytes(Path.Combine(directory, Shard2Name), RawSafetensors.Build(s2, PtMetadata));
        var weightMap = new JsonObject();
        long total = 0;
        var all = new List<(string Name, string Shard)>();
        foreach (var e in s1) { all.Add((e.Name, Shard1Name)); total += e.Data.Length; }
        foreach (var e in s2) { all.Add((e.Name, Shard2Name)); total += e.Data.Length; }
        all.Sort((a, b) => string.CompareOrdinal(a.Name, b.Name));
        foreach (var (name, shard) in all) weightMap[name] = shard;
        var index = new JsonObject { ["metadata"] = new JsonObject { ["total_size"] = total }, ["weight_map"] = weightMap };
        File.WriteAllText(Path.Combine(directory, "model.safetensors.index.json"), index.ToJsonString());
        WriteAuxiliaryFiles(directory);
        var data = new Dictionary<string, byte[]>();
        foreach (var e in s1) data[e.Name] = e.Data;
        foreach (var e in s2) data[e.Name] = e.Data;
        return data;
    }

    /// <summary>A single-file checkpoint (<c>model.safetensors</c>) with auxiliary files; returns every tensor's bytes.</summary>
    public static Dictionary<string, byte[]> CreateSingle(string directory)
    {
        Directory.CreateDirectory(directory);
        var entries = new List<RawSafetensors.Entry>(Shard1Entries());
        entries.AddRange(Shard2Entries());
        File.WriteAllBytes(Path.Combine(directory, "model.safetensors"), RawSafetensors.Build(entries, PtMetadata));
        WriteAuxiliaryFiles(directory);
        var data = new Dictionary<string, byte[]>();
        foreach (var e in entries) data[e.Name] = e.Data;
        return data;
    }

    public static void WriteAuxiliaryFiles(string directory)
    {
        foreach (var f in AuxiliaryFiles)
        {
            string path = Path.Combine(directory, f);
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            File.WriteAllText(path, f.EndsWith(".json") ? $"{{\"name\": \"{f}\"}}" : $"contents of {f}\n");
        }
        foreach (var f in NonAuxiliaryFiles)
        {
            string path = Path.Combine(directory, f);
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            File.WriteAllText(path, "not to be copied");
        }
    }
}
