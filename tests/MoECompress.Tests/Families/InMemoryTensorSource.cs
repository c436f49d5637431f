using MoECompress.Formats.Safetensors;
using TorchSharp;

namespace MoECompress.Tests.Families;

/// <summary>A tiny ITensorSource over byte arrays, for hand-built tensors.</summary>
internal sealed class InMemoryTensorSource : ITensorSource
{
    private readonly Dictionary<string, (TensorInfo Info, byte[] Bytes)> _tensors = new();
    private readonly List<string> _names = [];

    public InMemoryTensorSource Add(string name, SafetensorsDType dtype, long[] shape, byte[] bytes)
    {
        Assert.Equal(dtype.ByteCount(shape), bytes.LongLength);
        _tensors[name] = (new TensorInfo(name, dtype, shape, 0, bytes.Length), bytes);
        _names.Add(name);
        return this;
    }

    public InMemoryTensorSource AddF32(string name, long[] shape, float[] values) =>
        Add(name, SafetensorsDType.F32, shape, values.SelectMany(BitConverter.GetBytes).ToArray());

    public IReadOnlyList<string> Names => _names;
    public bool Contains(string name) => _tensors.ContainsKey(name);
    public TensorInfo GetInfo(string name) => _tensors[name].Info;
    public ReadOnlySpan<byte> GetBytes(string name) => _tensors[name].Bytes;

    public torch.Tensor ToTensor(string name, torch.ScalarType? @as = null)
    {
        var (info, bytes) = _tensors[name];
        torch.Tensor t;
        if (info.DType.IsFloat8())
        {
            var values = new float[bytes.Length];
            Float8.Decode(info.DType, bytes, values);
            t = torch.tensor(values, info.Shape);
        }
        else
        {
            t = torch.empty(info.Shape, info.DType.ToScalarType());
            bytes.CopyTo(t.bytes);
        }
        if (@as is { } type && type != t.dtype)
        {
            var converted = t.to(type);
            t.Dispose();
            return converted;
        }
        return t;
    }
}
