using MoECompress.Formats.Errors;
using MoECompress.Formats.Safetensors;
using TorchSharp;

namespace MoECompress.Tests.Safetensors;

/// <summary>ToTensor for every dtype, with values written as raw little-endian bytes by the test.</summary>
public class ToTensorTests : IDisposable
{
    private readonly TempDirectory _tmp = new();
    private readonly SafetensorsFile _file;

    public ToTensorTests()
    {
        var entries = new List<RawSafetensors.Entry>
        {
            new("bool", "BOOL", new long[] { 3 }, new byte[] { 1, 0, 1 }),
            new("u8", "U8", new long[] { 2 }, new byte[] { 0, 255 }),
            new("i8", "I8", new long[] { 2 }, RawSafetensors.Bytes<sbyte>(-128, 127)),
            new("i16", "I16", new long[] { 2 }, RawSafetensors.Bytes<short>(-32768, 1234)),
            new("u16", "U16", new long[] { 3 }, RawSafetensors.Bytes<ushort>(0, 40000, 65535)),
            new("i32", "I32", new long[] { 2, 1 }, RawSafetensors.Bytes(int.MinValue, 7)),
            new("u32", "U32", new long[] { 2 }, RawSafetensors.Bytes(0u, uint.MaxValue)),
            new("i64", "I64", new long[] { 2 }, RawSafetensors.Bytes(long.MinValue, 42L)),
            new("u64", "U64", new long[] { 2 }, RawSafetensors.Bytes(0UL, (ulong)long.MaxValue)),
            new("u64big", "U64", new long[] { 1 }, RawSafetensors.Bytes(1UL << 63)),
            new("f16", "F16", new long[] { 3 }, RawSafetensors.Bytes((Half)1.5, (Half)(-2), (Half)65504)),
            new("bf16", "BF16", new long[] { 3 }, RawSafetensors.Bytes<ushort>(0x3F80, 0xC000, 0x3FC0)), // 1, -2, 1.5
            new("f32", "F32", new long[] { 2, 2 }, RawSafetensors.Bytes(1f, -0.5f, 3.25f, float.MaxValue)),
            new("f64", "F64", new long[] { 2 }, RawSafetensors.Bytes(Math.PI, -1e300)),
            new("e4m3", "F8_E4M3", new long[] { 2, 3 }, new byte[] { 0x38, 0x3C, 0x01, 0x7E, 0xB8, 0x7F }),
            new("e5m2", "F8_E5M2", new long[] { 5 }, new byte[] { 0x3C, 0x01, 0x7B, 0xFC, 0x7D }),
            new("scalar", "F32", Array.Empty<long>(), RawSafetensors.Bytes(9f)),
            new("empty", "BF16", new long[] { 0, 3 }, Array.Empty<byte>()),
        };
        string path = _tmp.Sub("all.safetensors");
        File.WriteAllBytes(path, RawSafetensors.Build(entries, null));
        _file = SafetensorsFile.Open(path);
    }

    public void Dispose()
    {
        _file.Dispose();
        _tmp.Dispose();
    }

    [Fact]
    public void IntegersAndBool()
    {
        using var scope = torch.NewDisposeScope();
        var b = _file.ToTensor("bool");
        Assert.Equal(torch.ScalarType.Bool, b.dtype);
        Assert.Equal(new[] { true, false, true }, b.data<bool>().ToArray());
        Assert.Equal(new byte[] { 0, 255 }, Check(_file.ToTensor("u8"), torch.ScalarType.Byte).data<byte>().ToArray());
        Assert.Equal(new sbyte[] { -128, 127 }, Check(_file.ToTensor("i8"), torch.ScalarType.Int8).data<sbyte>().ToArray());
        Assert.Equal(new short[] { -32768, 1234 }, Check(_file.ToTensor("i16"), torch.ScalarType.Int16).data<short>().ToArray());
        var i32 = Check(_file.ToTensor("i32"), torch.ScalarType.Int32);
        Assert.Equal(new long[] { 2, 1 }, i32.shape);
        Assert.Equal(new[] { int.MinValue, 7 }, i32.data<int>().ToArray());
        Assert.Equal(new[] { long.MinValue, 42L }, Check(_file.ToTensor("i64"), torch.ScalarType.Int64).data<long>().ToArray());
    }

    [Fact]
    public void UnsignedTypesWidenToTheNextSignedType()
    {
        using var scope = torch.NewDisposeScope();
        Assert.Equal(new[] { 0, 40000, 65535 }, Check(_file.ToTensor("u16"), torch.ScalarType.Int32).data<int>().ToArray());
        Assert.Equal(new[] { 0L, uint.MaxValue }, Check(_file.ToTensor("u32"), torch.ScalarType.Int64).data<long>().ToArray());
        Assert.Equal(new[] { 0L, long.MaxValue }, Check(_file.ToTensor("u64"), torch.ScalarType.Int64).data<long>().ToArray());
        var ex = Assert.Throws<MoeCompressException>(() => _file.ToTensor("u64big"));
        Assert.Equal(ErrorKind.InvalidValues, ex.Kind);
        Assert.Contains("u64big", ex.Message);
    }

    [Fact]
    public void FloatsKeepTheirBits()
    {
        using var scope = torch.NewDisposeScope();
        var f16 = Check(_file.ToTensor("f16"), torch.ScalarType.Float16);
        Assert.Equal(new[] { 1.5f, -2f, 65504f }, f16.to_type(torch.ScalarType.Float32).data<float>().ToArray());
        var bf16 = Check(_file.ToTensor("bf16"), torch.ScalarType.BFloat16);
        Assert.Equal(new[] { 1f, -2f, 1.5f }, bf16.to_type(torch.ScalarType.Float32).data<float>().ToArray());
        var f32 = Check(_file.ToTensor("f32"), torch.ScalarType.Float32);
        Assert.Equal(new long[] { 2, 2 }, f32.shape);
        Assert.Equal(new[] { 1f, -0.5f, 3.25f, float.MaxValue }, f32.data<float>().ToArray());
        Assert.Equal(new[] { Math.PI, -1e300 }, Check(_file.ToTensor("f64"), torch.ScalarType.Float64).data<double>().ToArray());
        var scalar = _file.ToTensor("scalar");
        Assert.Empty(scalar.shape);
        Assert.Equal(9f, scalar.item<float>());
        var empty = Check(_file.ToTensor("empty"), torch.ScalarType.BFloat16);
        Assert.Equal(new long[] { 0, 3 }, empty.shape);
    }

    [Fact]
    public void Float8DecodesToFloat32()
    {
        using var scope = torch.NewDisposeScope();
        var e4 = Check(_file.ToTensor("e4m3"), torch.ScalarType.Float32);
        Assert.Equal(new long[] { 2, 3 }, e4.shape);
        var v = e4.data<float>().ToArray();
        Assert.Equal(new[] { 1f, 1.5f, 0.001953125f, 448f, -1f }, v[..5]);
        Assert.True(float.IsNaN(v[5]));
        var e5 = Check(_file.ToTensor("e5m2"), torch.ScalarType.Float32).data<float>().ToArray();
        Assert.Equal(new[] { 1f, 1.52587890625e-05f, 57344f, float.NegativeInfinity }, e5[..4]);
        Assert.True(float.IsNaN(e5[4]));
    }

    [Fact]
    public void ConvertsOnRequest()
    {
        using var scope = torch.NewDisposeScope();
        var e4 = Check(_file.ToTensor("e4m3", torch.ScalarType.BFloat16), torch.ScalarType.BFloat16);
        Assert.Equal(new[] { 1f, 1.5f, 0.001953125f, 448f, -1f }, e4.to_type(torch.ScalarType.Float32).data<float>().ToArray()[..5]);
        var bf = Check(_file.ToTensor("bf16", torch.ScalarType.Float32), torch.ScalarType.Float32);
        Assert.Equal(new[] { 1f, -2f, 1.5f }, bf.data<float>().ToArray());
        var u16 = Check(_file.ToTensor("u16", torch.ScalarType.Float64), torch.ScalarType.Float64);
        Assert.Equal(new[] { 0.0, 40000, 65535 }, u16.data<double>().ToArray());
    }

    [Fact]
    public void ResultIsACopyThatOutlivesTheFile()
    {
        using var tmp = new TempDirectory();
        string path = tmp.Sub("x.safetensors");
        File.WriteAllBytes(path, RawSafetensors.Build(new[] { new RawSafetensors.Entry("w", "F32", new long[] { 2 }, RawSafetensors.Bytes(5f, 6f)) }, null));
        torch.Tensor t;
        using (var f = SafetensorsFile.Open(path)) t = f.ToTensor("w");
        using (t)
        {
            t.add_(1);
            Assert.Equal(new[] { 6f, 7f }, t.data<float>().ToArray());
        }
        Assert.Equal(RawSafetensors.Bytes(5f, 6f), RawSafetensors.Split(File.ReadAllBytes(path)).Data);
    }

    private static torch.Tensor Check(torch.Tensor t, torch.ScalarType expected)
    {
        Assert.Equal(expected, t.dtype);
        return t;
    }
}
