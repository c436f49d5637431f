using MoECompress.Formats.Errors;
using MoECompress.Formats.Safetensors;
using TorchSharp;

namespace MoECompress.Tests.Safetensors;

public class SafetensorsDTypesTests
{
    [Theory]
    [InlineData("BOOL", 1)] [InlineData("U8", 1)] [InlineData("I8", 1)] [InlineData("F8_E4M3", 1)] [InlineData("F8_E5M2", 1)]
    [InlineData("I16", 2)] [InlineData("U16", 2)] [InlineData("F16", 2)] [InlineData("BF16", 2)]
    [InlineData("I32", 4)] [InlineData("U32", 4)] [InlineData("F32", 4)]
    [InlineData("I64", 8)] [InlineData("U64", 8)] [InlineData("F64", 8)]
    public void ParsesHeaderNamesAndKnowsItemSizes(string name, int size)
    {
        Assert.True(SafetensorsDTypes.TryParse(name, out var d));
        Assert.Equal(size, d.ItemSize());
        Assert.Equal(name, d.ToHeaderName());
        Assert.Equal(d, SafetensorsDTypes.Parse(name));
    }

    [Theory]
    [InlineData("bf16")] [InlineData("F8")] [InlineData("3")] [InlineData("")] [InlineData(" F32")] [InlineData("FLOAT32")]
    public void RejectsOtherSpellings(string name)
    {
        Assert.False(SafetensorsDTypes.TryParse(name, out _));
        var ex = Assert.Throws<MoeCompressException>(() => SafetensorsDTypes.Parse(name));
        Assert.Equal(ErrorKind.Usage, ex.Kind);
    }

    [Fact]
    public void EveryDTypeHasANameASizeAndATorchType()
    {
        Assert.Equal(15, SafetensorsDTypes.All.Count);
        foreach (var d in SafetensorsDTypes.All)
        {
            Assert.True(SafetensorsDTypes.TryParse(d.ToHeaderName(), out var back));
            Assert.Equal(d, back);
            var t = d.ToScalarType();
            if (d.HasExactTorchType())
            {
                Assert.Equal(d, SafetensorsDTypes.FromScalarType(t));
            }
        }
        Assert.Equal(torch.ScalarType.Int32, SafetensorsDType.U16.ToScalarType());
        Assert.Equal(torch.ScalarType.Int64, SafetensorsDType.U32.ToScalarType());
        Assert.Equal(torch.ScalarType.Int64, SafetensorsDType.U64.ToScalarType());
        Assert.Equal(torch.ScalarType.Float32, SafetensorsDType.F8_E4M3.ToScalarType());
        Assert.Equal(torch.ScalarType.BFloat16, SafetensorsDType.BF16.ToScalarType());
        Assert.Throws<ArgumentException>(() => SafetensorsDTypes.FromScalarType(torch.ScalarType.ComplexFloat32));
    }

    [Fact]
    public void ByteCountChecksOverflow()
    {
        Assert.Equal(2 * 3 * 4 * 2, SafetensorsDType.BF16.ByteCount(new long[] { 2, 3, 4 }));
        Assert.Equal(4, SafetensorsDType.F32.ByteCount(Array.Empty<long>()));
        Assert.Throws<OverflowException>(() => SafetensorsDType.F64.ByteCount(new long[] { long.MaxValue / 4 }));
    }
}
