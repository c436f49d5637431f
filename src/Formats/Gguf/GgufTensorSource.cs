using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Families;
using MoECompress.Formats.Safetensors;
using TorchSharp;

namespace MoECompress.Formats.Gguf;

/// <summary>
/// A GGUF file seen as a Hugging Face checkpoint: every tensor dequantized to float32 under the name the family adapters
/// and the engine use. Stacked experts (<c>ffn_*_exps</c>, ne = [in, out, E]) appear as one
/// <c>…experts.{e}.….weight</c> per expert; llama q/k rows are permuted back to rotate-half order; DeepSeek's
/// <c>attn_k_b</c> / <c>attn_v_b</c> are joined back into <c>kv_b_proj</c>. <see cref="Config"/> is the config.json the
/// exporter stored (<see cref="GgufArchitecture.SourceConfigKey"/>), checked against the standard keys, or one rebuilt
/// from those keys. Owns the file; dispose to unmap. Thread-safe.
/// </summary>
public sealed class GgufTensorSource : ITensorSource, IDisposable
{
    private readonly Dictionary<string, Func<float[]>> _producers = new(StringComparer.Ordinal);
    private readonly Dictionary<string, long[]> _shapes = new(StringComparer.Ordinal);
    private readonly Dictionary<string, (GgmlType Type, long Bytes)> _stored = new(StringComparer.Ordinal);
    private readonly List<string> _names = [];
    private readonly object _lock = new();
    private readonly LinkedList<(string Name, float[] Values)> _lru = new();
    private readonly Dictionary<string, LinkedListNode<(string Name, float[] Values)>> _cache = new(StringComparer.Ordinal);
    private long _cachedBytes;
    private const long CacheBytes = 512L << 20;

    public GgufFile File { get; }
    public GgufArchitecture Architecture { get; }
    /// <summary>The config.json this file describes.</summary>
    public JsonObject Config { get; }
    /// <summary>True when <see cref="Config"/> came from the exporter's stored config.json, false when rebuilt from keys.</summary>
    public bool ConfigStored { get; }
    /// <summary>GGUF tensors with no Hugging Face counterpart here (not presented).</summary>
    public IReadOnlyList<string> Unmapped { get; }
    /// <summary>Bytes of the stored tensor data (the file's real size, unlike the float32 view).</summary>
    public long StoredTensorBytes => File.Tensors.Sum(t => t.ByteLength);

    private GgufTensorSource(GgufFile file)
    {
        File = file;
        var arch = file.Require("general.architecture", GgufValueType.String).Value as string ?? "";
        Architecture = GgufArchitecture.ByName(arch, file.Path);
        (Config, ConfigStored) = ReadConfig(file, Architecture);
        var unmapped = new List<string>();
        var heads = (int)file.Require($"{arch}.attention.head_count", GgufValueType.UInt32).AsUInt64();
        var kvHeads = file.Get($"{arch}.attention.head_count_kv") is { } kvh ? (int)kvh.AsUInt64() : heads;
        foreach (var t in file.Tensors)
        {
            if (t.Name.EndsWith("_exps.weight", StringComparison.Ordinal) && TryStacked(t)) continue;
            if (Architecture.SplitsKvB && t.Name.EndsWith(".attn_k_b.weight", StringComparison.Ordinal))
            {
                AddKvB(t);
                continue;
            }
            if (Architecture.SplitsKvB && t.Name.EndsWith(".attn_v_b.weight", StringComparison.Ordinal)) continue;
            var hf = Architecture.HfNameOf(t.Name);
            if (hf is null)
            {
                unmapped.Add(t.Name);
                continue;
            }
            var info = t;
            Func<float[]> produce = () => file.Dequantize(info.Name);
            if (Architecture.PermutesQk && (t.Name.EndsWith(".attn_q.weight") || t.Name.EndsWith(".attn_k.weight")))
            {
                var h = t.Name.EndsWith(".attn_q.weight") ? heads : kvHeads;
                produce = () => GgufArchitecture.PermuteRows(file.Dequantize(info.Name), h, (int)info.Dimensions[1], (int)info.Dimensions[0], inverse: true);
            }
            Add(hf, t.TorchShape, produce, (t.Type, t.ByteLength));
        }
        Unmapped = unmapped;
    }

    /// <summary>Opens <paramref name="path"/> (see <see cref="GgufFile.Open"/>) and maps its tensors.</summary>
    /// <exception cref="MoeCompressException">Malformed file (InvalidCheckpoint), unsupported architecture or missing keys (InvalidConfig).</exception>
    public static GgufTensorSource Open(string path)
    {
        var file = GgufFile.Open(path);
        try
        {
            return new GgufTensorSource(file);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>True when <paramref name="path"/> names a .gguf file.</summary>
    public static bool IsGgufPath(string path) =>
        path.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase) && System.IO.File.Exists(path);

    private static (JsonObject, bool) ReadConfig(GgufFile file, GgufArchitecture arch)
    {
        var rebuilt = arch.ConfigFrom(file);
        if (file.Get(GgufArchitecture.SourceConfigKey) is not { Type: GgufValueType.String, Value: string text }) return (rebuilt, false);
        JsonObject stored;
        try
        {
            stored = JsonNode.Parse(text) as JsonObject ?? throw new FormatException("not an object");
        }
        catch (Exception e) when (e is FormatException or System.Text.Json.JsonException)
        {
            throw new CheckpointFormatException(file.Path, null, null, $"metadata '{GgufArchitecture.SourceConfigKey}' is not a JSON object: {e.Message}", ErrorKind.InvalidConfig);
        }
        foreach (var key in new[] { "hidden_size", "num_hidden_layers", "num_attention_heads", "num_experts_per_tok" })
            if (stored[key]?.ToJsonString() is { } s && s != rebuilt[key]?.ToJsonString())
                throw new CheckpointFormatException(file.Path, null, null,
                    $"stored config.json says {key} = {s}, the GGUF keys say {rebuilt[key]?.ToJsonString()}", ErrorKind.InvalidConfig);
        return (stored, true);
    }

    private bool TryStacked(GgufTensorInfo t)
    {
        var parts = t.Name.Split('.');
        if (parts.Length != 4 || parts[0] != "blk" || !int.TryParse(parts[1], out var layer) || t.Dimensions.Length != 3) return false;
        ExpertProjection? p = parts[2] switch { "ffn_gate_exps" => ExpertProjection.Gate, "ffn_up_exps" => ExpertProjection.Up, "ffn_down_exps" => ExpertProjection.Down, _ => null };
        if (p is null) return false;
        long cols = t.Dimensions[0], rows = t.Dimensions[1], experts = t.Dimensions[2];
        for (var e = 0; e < experts; e++)
        {
            var expert = e;
            Add(Architecture.ExpertHfName(layer, e, p.Value), [rows, cols], () =>
                Cached(t.Name, () => File.Dequantize(t.Name)).AsSpan((int)(expert * rows * cols), (int)(rows * cols)).ToArray(),
                (t.Type, t.ByteLength / experts));
        }
        return true;
    }

    private void AddKvB(GgufTensorInfo kb)
    {
        var vbName = kb.Name.Replace(".attn_k_b.", ".attn_v_b.");
        var vb = File.GetTensor(vbName);
        // k_b: ne [nope, rank, heads]; v_b: ne [rank, v, heads] → kv_b [heads·(nope+v), rank].
        long nope = kb.Dimensions[0], rank = kb.Dimensions[1], heads = kb.Dimensions[2], v = vb.Dimensions[1];
        if (vb.Dimensions[0] != rank || vb.Dimensions[2] != heads)
            throw new CheckpointFormatException(File.Path, vbName, null, $"shape [{string.Join(", ", vb.Dimensions)}] does not match {kb.Name} [{string.Join(", ", kb.Dimensions)}]");
        var layer = kb.Name.Split('.')[1];
        Add($"model.layers.{layer}.self_attn.kv_b_proj.weight", [heads * (nope + v), rank], () =>
        {
            float[] k = File.Dequantize(kb.Name), vv = File.Dequantize(vbName);
            var result = new float[heads * (nope + v) * rank];
            for (var h = 0; h < heads; h++)
            {
                var rowBase = h * (nope + v);
                for (var r = 0; r < rank; r++)
                    for (var n = 0; n < nope; n++)
                        result[(rowBase + n) * rank + r] = k[(h * rank + r) * nope + n];
                Array.Copy(vv, h * v * rank, result, (rowBase + nope) * rank, v * rank);
            }
            return result;
        }, (kb.Type, kb.ByteLength + vb.ByteLength));
    }

    private void Add(string name, long[] shape, Func<float[]> produce, (GgmlType, long) stored)
    {
        _stored[name] = stored;
        if (!_producers.TryAdd(name, produce))
            throw new CheckpointFormatException(File.Path, name, null, "two GGUF tensors map to this Hugging Face name");
        _shapes[name] = shape;
        _names.Add(name);
    }

    private float[] Cached(string key, Func<float[]> produce)
    {
        lock (_lock)
        {
            if (_cache.TryGetValue(key, out var node))
            {
                _lru.Remove(node);
                _lru.AddFirst(node);
                return node.Value.Values;
            }
        }
        var values = produce();
        lock (_lock)
        {
            if (_cache.TryGetValue(key, out var existing)) return existing.Value.Values;
            _cache[key] = _lru.AddFirst((key, values));
            _cachedBytes += values.LongLength * 4;
            while (_cachedBytes > CacheBytes && _lru.Count > 1)
            {
                var last = _lru.Last!;
                _lru.RemoveLast();
                _cache.Remove(last.Value.Name);
                _cachedBytes -= last.Value.Values.LongLength * 4;
            }
        }
        return values;
    }

    private float[] Values(string name)
    {
        var produce = _producers.GetValueOrDefault(name)
            ?? throw new CheckpointFormatException(File.Path, name, null, "no such tensor (after mapping the GGUF names to Hugging Face names)");
        return Cached("hf:" + name, produce);
    }

    /// <summary>The ggml type a presented tensor is stored as and the bytes it takes in the file (an expert's share of
    /// its stacked tensor).</summary>
    public (GgmlType Type, long Bytes) Stored(string name) => _stored.TryGetValue(name, out var s)
        ? s
        : throw new CheckpointFormatException(File.Path, name, null, "no such tensor (after mapping the GGUF names to Hugging Face names)");

    public IReadOnlyList<string> Names => _names;

    public bool Contains(string name) => _producers.ContainsKey(name);

    public TensorInfo GetInfo(string name)
    {
        if (!_shapes.TryGetValue(name, out var shape))
            throw new CheckpointFormatException(File.Path, name, null, "no such tensor (after mapping the GGUF names to Hugging Face names)");
        var bytes = shape.Aggregate(1L, (a, b) => a * b) * 4;
        return new TensorInfo(name, SafetensorsDType.F32, shape, 0, bytes);
    }

    public ReadOnlySpan<byte> GetBytes(string name) => MemoryMarshal.AsBytes(Values(name).AsSpan());

    public torch.Tensor ToTensor(string name, torch.ScalarType? @as = null)
    {
        var values = Values(name);
        var t = torch.empty(_shapes[name], torch.ScalarType.Float32);
        MemoryMarshal.AsBytes(values.AsSpan()).CopyTo(t.bytes);
        if (@as is { } target && target != torch.ScalarType.Float32)
        {
            var converted = t.to(target);
            t.Dispose();
            return converted;
        }
        return t;
    }

    public void Dispose() => File.Dispose();
}
