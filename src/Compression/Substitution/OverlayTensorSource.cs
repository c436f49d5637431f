using MoECompress.Formats.Safetensors;
using TorchSharp;
using static TorchSharp.torch;

namespace MoECompress.Compression.Substitution;

/// <summary>
/// A checkpoint's tensors plus float32 tensors added in memory (the vectors trained so far), so that the engine loads
/// layers already substituted exactly as it will from the written output. Owns the added tensors only.
/// </summary>
internal sealed class OverlayTensorSource : ITensorSource, IDisposable
{
    private readonly ITensorSource _inner;
    private readonly Dictionary<string, Tensor> _added = new(StringComparer.Ordinal);
    private readonly List<string> _names;

    public OverlayTensorSource(ITensorSource inner)
    {
        _inner = inner;
        _names = inner.Names.ToList();
    }

    public IReadOnlyList<string> Names => _names;

    /// <summary>Adds (or replaces) a tensor; a float32 contiguous CPU copy is kept.</summary>
    public void Set(string name, Tensor value)
    {
        if (_inner.Contains(name)) throw new ArgumentException($"tensor '{name}' is already in the checkpoint", nameof(name));
        var copy = value.to(ScalarType.Float32).cpu().contiguous().clone().DetachFromDisposeScope();
        if (_added.Remove(name, out var old)) old.Dispose();
        else _names.Add(name);
        _added[name] = copy;
    }

    public bool Contains(string name) => _added.ContainsKey(name) || _inner.Contains(name);

    public TensorInfo GetInfo(string name) => _added.TryGetValue(name, out var t)
        ? new TensorInfo(name, SafetensorsDType.F32, t.shape, 0, t.NumberOfElements * 4)
        : _inner.GetInfo(name);

    public ReadOnlySpan<byte> GetBytes(string name) => _added.TryGetValue(name, out var t) ? t.bytes : _inner.GetBytes(name);

    public Tensor ToTensor(string name, ScalarType? @as = null)
    {
        if (!_added.TryGetValue(name, out var t)) return _inner.ToTensor(name, @as);
        return @as is { } s && s != t.dtype ? t.to(s) : t.clone();
    }

    public void Dispose()
    {
        foreach (var t in _added.Values) t.Dispose();
        _added.Clear();
    }
}
