using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Safetensors;
using TorchSharp;

namespace MoECompress.Formats.Quantized;

/// <summary>
/// A view of a packed quantized checkpoint (GPTQ or compressed-tensors pack-quantized) as a plain one: every packed
/// Linear module appears as a dense <c>prefix.weight</c> [out, in] (dequantized on demand: Ŵ = s·(q − z), kept in a
/// small cache) and its packed parts (<c>qweight</c>, <c>qzeros</c>, <c>scales</c>, <c>g_idx</c>, or
/// <c>weight_packed</c>, <c>weight_scale</c>, <c>weight_zero_point</c>, <c>weight_shape</c>, <c>weight_g_idx</c>) are
/// hidden; every other tensor (routers, norms, embeddings, biases) passes through unchanged. The engine, the
/// evaluation and <see cref="Families.ExpertWeights"/> thus read packed output like any model.
/// <see cref="Families.ModelCheckpoint.Open"/> wraps checkpoints whose config.json declares such a
/// quantization_config (see <see cref="Wrap"/>).
/// </summary>
/// <remarks>Thread-safe. Does not own the inner source. Spans from <see cref="GetBytes"/> stay valid while held (they
/// point into managed arrays the cache may drop but the garbage collector keeps alive while referenced).</remarks>
public sealed class QuantizedTensorSource : ITensorSource
{
    private readonly ITensorSource _inner;
    private readonly string _description;
    private readonly QuantizedTensorSourceOptions _options;
    private readonly Dictionary<string, PackedModule> _byWeight = new(StringComparer.Ordinal);
    private readonly Dictionary<string, PackedModule> _byPrefix = new(StringComparer.Ordinal);
    private readonly HashSet<string> _hidden = new(StringComparer.Ordinal);
    private readonly string[] _names;
    private readonly GptqQuantizationConfig? _gptq;
    private readonly CompressedTensorsQuantizationConfig? _compressed;

    private readonly object _cacheLock = new();
    private readonly LinkedList<(string Name, byte[] Bytes)> _lru = new();
    private readonly Dictionary<string, LinkedListNode<(string Name, byte[] Bytes)>> _cache = new(StringComparer.Ordinal);
    private long _cachedBytes;

    /// <summary>
    /// Wraps <paramref name="inner"/> using <paramref name="config"/>'s <c>quantization_config</c>, which must be
    /// <c>gptq</c> or <c>compressed-tensors</c> pack-quantized.
    /// </summary>
    /// <exception cref="MoeCompressException">InvalidConfig: missing or unsupported quantization_config;
    /// InvalidCheckpoint (<see cref="CheckpointFormatException"/>): packed parts missing or inconsistent, or no packed
    /// module at all.</exception>
    public QuantizedTensorSource(ITensorSource inner, JsonObject config, string configPath, QuantizedTensorSourceOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(inner);
        ArgumentNullException.ThrowIfNull(config);
        _inner = inner;
        _options = options ?? new QuantizedTensorSourceOptions();
        if (_options.DType is not (SafetensorsDType.F32 or SafetensorsDType.BF16 or SafetensorsDType.F16))
            throw new ArgumentException($"dequantized weights are presented as F32, BF16 or F16, not {_options.DType}", nameof(options));
        _description = inner is SafetensorsCheckpoint sc ? sc.Directory : Path.GetDirectoryName(Path.GetFullPath(configPath)) ?? configPath;
        var q = config["quantization_config"] as JsonObject
                ?? throw new MoeCompressException(ErrorKind.InvalidConfig, $"{configPath}: no quantization_config object");
        QuantMethod = QuantMethodOf(config) ?? "(none)";
        switch (QuantMethod)
        {
            case GptqQuantizationConfig.Method:
                _gptq = GptqQuantizationConfig.Read(q, configPath);
                FindGptqModules(configPath);
                break;
            case CompressedTensorsQuantizationConfig.Method:
                _compressed = CompressedTensorsQuantizationConfig.Read(q, configPath);
                FindCompressedTensorsModules(configPath);
                break;
            default:
                throw new MoeCompressException(ErrorKind.InvalidConfig,
                    $"{configPath}: key 'quantization_config.quant_method' is '{QuantMethod}'; packed weights are read for gptq and compressed-tensors");
        }
        if (_byPrefix.Count == 0)
            throw new CheckpointFormatException(_description, null, null,
                $"config.json declares {QuantMethod} quantization but no tensor is stored packed " +
                $"(no *.{(_gptq is not null ? GptqLayout.QWeight : CompressedTensorsLayout.WeightPacked)})");

        var names = new List<string>(inner.Names.Count);
        var emitted = new HashSet<string>(StringComparer.Ordinal);
        var partOf = new Dictionary<string, PackedModule>(StringComparer.Ordinal);
        foreach (var m in _byPrefix.Values)
            foreach (var p in m.Parts) partOf[p] = m;
        foreach (var name in inner.Names)
        {
            if (partOf.TryGetValue(name, out var m))
            {
                if (emitted.Add(m.WeightName)) names.Add(m.WeightName);
            }
            else
            {
                names.Add(name);
            }
        }
        _names = names.ToArray();
    }

    /// <summary>The source the packed tensors are read from (not owned).</summary>
    public ITensorSource Inner => _inner;

    /// <summary>"gptq" or "compressed-tensors".</summary>
    public string QuantMethod { get; }

    /// <summary>The format of the packed modules.</summary>
    public QuantizedFormat Format => _gptq is not null ? QuantizedFormat.Gptq : QuantizedFormat.CompressedTensors;

    /// <summary>dtype of the presented dense weights.</summary>
    public SafetensorsDType DType => _options.DType;

    /// <summary>The packed modules by module prefix.</summary>
    public IReadOnlyDictionary<string, PackedModule> Modules => _byPrefix;

    /// <summary>Bytes of the stored tensors (packed parts included): the checkpoint's real size, unlike the sum over <see cref="Names"/>.</summary>
    public long StoredTensorBytes => _inner.Names.Sum(n => _inner.GetInfo(n).ByteLength);

    /// <summary>The packed module presented as <paramref name="weightName"/> (<c>prefix.weight</c>), or null for a stored tensor.</summary>
    public PackedModule? ModuleOf(string weightName) => _byWeight.GetValueOrDefault(weightName);

    /// <summary>quant_method of config.json's quantization_config (lower case), or null when there is none.</summary>
    public static string? QuantMethodOf(JsonObject config) =>
        config["quantization_config"] is JsonObject q && q["quant_method"] is JsonValue v && v.GetValueKind() == JsonValueKind.String
            ? v.GetValue<string>().ToLowerInvariant()
            : null;

    /// <summary>
    /// What <see cref="Families.ModelCheckpoint"/> reads through: <paramref name="inner"/> itself when config.json has no
    /// quantization_config, or one whose weights are read by the family code (DeepSeek's block FP8 <c>fp8</c> with
    /// <c>weight_block_size</c>, GPT-OSS <c>mxfp4</c>); a <see cref="QuantizedTensorSource"/> for <c>gptq</c> and
    /// <c>compressed-tensors</c>.
    /// </summary>
    /// <exception cref="MoeCompressException">InvalidConfig: any other quant_method (awq, bitsandbytes, per-tensor fp8, ...),
    /// or a malformed gptq / compressed-tensors config.</exception>
    public static ITensorSource Wrap(ITensorSource inner, JsonObject config, string configPath, QuantizedTensorSourceOptions? options = null)
    {
        if (config["quantization_config"] is null) return inner;
        string? method = QuantMethodOf(config);
        bool blockScaled = config["quantization_config"] is JsonObject q && q["weight_block_size"] is JsonArray;
        switch (method)
        {
            case GptqQuantizationConfig.Method:
            case CompressedTensorsQuantizationConfig.Method:
                return new QuantizedTensorSource(inner, config, configPath, options);
            case "mxfp4":
                return inner;
            case "fp8" when blockScaled:
                return inner;
            case "fp8":
                throw new MoeCompressException(ErrorKind.InvalidConfig,
                    $"{configPath}: quantization_config 'fp8' without weight_block_size (per-tensor FP8) is not supported; " +
                    "only DeepSeek-style 128×128 block-scaled FP8 is read");
            default:
                throw new MoeCompressException(ErrorKind.InvalidConfig,
                    $"{configPath}: quantization_config.quant_method '{method ?? "(missing)"}' is not supported; readable are gptq, " +
                    "compressed-tensors (pack-quantized), fp8 with weight_block_size, and mxfp4 — dequantize the model with its own tools first");
        }
    }

    // ---------------------------------------------------------------- module discovery

    private void FindGptqModules(string configPath)
    {
        var suffix = "." + GptqLayout.QWeight;
        foreach (var name in _inner.Names)
        {
            if (!name.EndsWith(suffix, StringComparison.Ordinal)) continue;
            string prefix = name[..^suffix.Length];
            var scheme = _gptq!.SchemeFor(prefix)
                         ?? throw new MoeCompressException(ErrorKind.InvalidConfig,
                             $"{configPath}: quantization_config.dynamic excludes module '{prefix}', but the checkpoint stores it packed ('{name}')");
            string file = FileOf(name);
            var (o, i, g) = GptqLayout.Shape(_inner, prefix, scheme.Bits, file);
            var parts = GptqLayout.Parts.Select(p => $"{prefix}.{p}").Where(_inner.Contains).ToList();
            Add(new PackedModule(prefix, QuantizedFormat.Gptq, scheme, o, i, g, parts));
        }
    }

    private void FindCompressedTensorsModules(string configPath)
    {
        var suffix = "." + CompressedTensorsLayout.WeightPacked;
        foreach (var name in _inner.Names)
        {
            if (!name.EndsWith(suffix, StringComparison.Ordinal)) continue;
            string prefix = name[..^suffix.Length];
            var scheme = _compressed!.SchemeFor(prefix)
                         ?? throw new MoeCompressException(ErrorKind.InvalidConfig,
                             $"{configPath}: no quantization_config.config_groups entry targets module '{prefix}' (or it is ignored), but the checkpoint stores it packed ('{name}')");
            string file = FileOf(name);
            var (o, i, g) = CompressedTensorsLayout.Shape(_inner, prefix, scheme, file);
            var parts = CompressedTensorsLayout.Parts.Select(p => $"{prefix}.{p}").Where(_inner.Contains).ToList();
            Add(new PackedModule(prefix, QuantizedFormat.CompressedTensors, scheme, o, i, g, parts));
        }
    }

    private void Add(PackedModule m)
    {
        if (_inner.Contains(m.WeightName))
            throw new CheckpointFormatException(FileOf(m.WeightName), m.WeightName, null,
                $"is stored both dense and packed ({string.Join(", ", m.Parts)})");
        _byPrefix.Add(m.Prefix, m);
        _byWeight.Add(m.WeightName, m);
        foreach (var p in m.Parts) _hidden.Add(p);
    }

    private string FileOf(string name) =>
        _inner is SafetensorsCheckpoint sc && sc.TryGetFile(name, out var f) ? f.Path : _description;

    // ---------------------------------------------------------------- decoding

    /// <summary>The integer codes, scales, zero points and groups of the module <paramref name="modulePrefix"/>, decoded from its packed tensors.</summary>
    /// <exception cref="ArgumentException">No packed module of that name.</exception>
    public UnpackedMatrix Unpack(string modulePrefix)
    {
        var m = _byPrefix.GetValueOrDefault(modulePrefix)
                ?? throw new ArgumentException($"'{modulePrefix}' is not a packed module of this checkpoint", nameof(modulePrefix));
        string file = FileOf(m.Parts[0]);
        return m.Format == QuantizedFormat.Gptq
            ? GptqLayout.Decode(_inner, m.Prefix, m.Scheme.Bits, _gptq!.StoresZeroMinusOne, m.Scheme.GroupSize, file)
            : CompressedTensorsLayout.Decode(_inner, m.Prefix, m.Scheme, file);
    }

    /// <summary>The presented bytes of a dense weight (dequantized, in <see cref="DType"/>), from the cache or decoded now.</summary>
    private byte[] Materialize(PackedModule m)
    {
        lock (_cacheLock)
        {
            if (_cache.TryGetValue(m.WeightName, out var node))
            {
                _lru.Remove(node);
                _lru.AddFirst(node);
                return node.Value.Bytes;
            }
        }
        var unpacked = Unpack(m.Prefix);
        long count = (long)m.OutFeatures * m.InFeatures;
        byte[] bytes;
        if (_options.DType == SafetensorsDType.F32)
        {
            bytes = new byte[count * sizeof(float)];
            unpacked.Dequantize(MemoryMarshal.Cast<byte, float>(bytes.AsSpan()));
        }
        else
        {
            bytes = PackedTensorReader.FloatBytes(unpacked.Dequantize(), _options.DType);
        }
        lock (_cacheLock)
        {
            if (_cache.TryGetValue(m.WeightName, out var existing)) return existing.Value.Bytes;
            var node = _lru.AddFirst((m.WeightName, bytes));
            _cache.Add(m.WeightName, node);
            _cachedBytes += bytes.LongLength;
            while (_cachedBytes > _options.CacheBytes && _lru.Count > 1)
            {
                var last = _lru.Last!;
                _lru.RemoveLast();
                _cache.Remove(last.Value.Name);
                _cachedBytes -= last.Value.Bytes.LongLength;
            }
        }
        return bytes;
    }

    // ---------------------------------------------------------------- ITensorSource

    /// <inheritdoc/>
    public IReadOnlyList<string> Names => _names;

    /// <inheritdoc/>
    public bool Contains(string name) => _byWeight.ContainsKey(name) || (!_hidden.Contains(name) && _inner.Contains(name));

    /// <inheritdoc/>
    public TensorInfo GetInfo(string name)
    {
        if (_byWeight.TryGetValue(name, out var m))
        {
            long bytes = (long)m.OutFeatures * m.InFeatures * _options.DType.ItemSize();
            return new TensorInfo(name, _options.DType, [m.OutFeatures, m.InFeatures], 0, bytes);
        }
        CheckVisible(name);
        return _inner.GetInfo(name);
    }

    /// <inheritdoc/>
    public ReadOnlySpan<byte> GetBytes(string name)
    {
        if (_byWeight.TryGetValue(name, out var m)) return Materialize(m);
        CheckVisible(name);
        return _inner.GetBytes(name);
    }

    /// <inheritdoc/>
    public torch.Tensor ToTensor(string name, torch.ScalarType? @as = null)
    {
        if (!_byWeight.TryGetValue(name, out var m))
        {
            CheckVisible(name);
            return _inner.ToTensor(name, @as);
        }
        var bytes = Materialize(m);
        var type = _options.DType.ToScalarType();
        var t = torch.empty([m.OutFeatures, m.InFeatures], type);
        bytes.AsSpan().CopyTo(t.bytes);
        if (@as is { } target && target != type)
        {
            var converted = t.to(target);
            t.Dispose();
            return converted;
        }
        return t;
    }

    private void CheckVisible(string name)
    {
        if (_hidden.Contains(name))
            throw new CheckpointFormatException(FileOf(name), name, null,
                "is a packed part of a quantized module; read the module's dequantized '.weight' instead");
    }
}
