using MoECompress.Formats.Safetensors;
using TorchSharp;
using static TorchSharp.torch;

namespace MoECompress.Tests.Model;

/// <summary>An <see cref="ITensorSource"/> over tensors held in memory (tests build tiny models with it).</summary>
internal sealed class InMemoryTensorSource : ITensorSource, IDisposable
{
    private readonly Dictionary<string, Tensor> _tensors = new();
    private readonly List<string> _names = new();
    private readonly Dictionary<string, SafetensorsDType> _declared = new();

    /// <summary>
    /// Reports <paramref name="dtype"/> for a tensor in its header entry while <see cref="ToTensor"/> keeps returning the
    /// stored float values (to exercise code paths keyed on the on-disk dtype, e.g. FP8 block scales).
    /// </summary>
    public void DeclareDType(string name, SafetensorsDType dtype) => _declared[name] = dtype;

    public IReadOnlyList<string> Names => _names;

    /// <summary>Stores a contiguous copy of <paramref name="value"/> (replacing an earlier tensor of that name).</summary>
    public void Set(string name, Tensor value)
    {
        var copy = value.contiguous().clone().DetachFromDisposeScope();
        if (_tensors.Remove(name, out var old)) old.Dispose();
        else _names.Add(name);
        _tensors[name] = copy;
    }

    public void Remove(string name)
    {
        if (_tensors.Remove(name, out var old))
        {
            old.Dispose();
            _names.Remove(name);
        }
    }

    /// <summary>The stored tensor (not a copy).</summary>
    public Tensor Get(string name) => _tensors[name];

    public bool Contains(string name) => _tensors.ContainsKey(name);

    public TensorInfo GetInfo(string name)
    {
        var t = _tensors.TryGetValue(name, out var v) ? v : throw new KeyNotFoundException($"tensor '{name}' is not in the in-memory source");
        var dtype = _declared.TryGetValue(name, out var declared) ? declared : t.dtype switch
        {
            ScalarType.Float32 => SafetensorsDType.F32,
            ScalarType.BFloat16 => SafetensorsDType.BF16,
            ScalarType.Float16 => SafetensorsDType.F16,
            ScalarType.Int64 => SafetensorsDType.I64,
            ScalarType.Int32 => SafetensorsDType.I32,
            _ => throw new NotSupportedException(t.dtype.ToString()),
        };
        return new TensorInfo(name, dtype, t.shape, 0, t.NumberOfElements * t.ElementSize);
    }

    public ReadOnlySpan<byte> GetBytes(string name) => _tensors[name].bytes;

    public Tensor ToTensor(string name, ScalarType? @as = null)
    {
        var t = _tensors[name];
        return @as is { } s && s != t.dtype ? t.to(s) : t.clone();
    }

    /// <summary>A deep copy (so one model can be changed while the other is kept).</summary>
    public InMemoryTensorSource Clone()
    {
        var c = new InMemoryTensorSource();
        foreach (var n in _names) c.Set(n, _tensors[n]);
        return c;
    }

    public void Dispose()
    {
        foreach (var t in _tensors.Values) t.Dispose();
        _tensors.Clear();
        _names.Clear();
    }
}
