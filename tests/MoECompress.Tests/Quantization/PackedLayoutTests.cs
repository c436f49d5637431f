using System.Runtime.InteropServices;
using MoECompress.Compression.Quantization;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Quantized;
using MoECompress.Formats.Safetensors;
using MoECompress.Formats.Synthetic;
using MoECompress.Tests.Families;
using static TorchSharp.torch;

namespace MoECompress.Tests.Quantization;

/// <summary>One module through QuantizedModuleWriter (specs, encode) and back through the layouts' decoders.</summary>
public class PackedLayoutTests
{
    private const string Prefix = "model.layers.0.block_sparse_moe.experts.1.w3";

    public static IEnumerable<object[]> Cases()
    {
        foreach (var format in new[] { QuantizedFormat.Gptq, QuantizedFormat.CompressedTensors })
            foreach (int bits in new[] { 2, 3, 4, 8 })
                foreach (bool sym in new[] { false, true })
                    yield return [format, bits, sym];
    }

    private static InMemoryTensorSource Source(IEnumerable<EncodedTensor> tensors)
    {
        var src = new InMemoryTensorSource();
        foreach (var t in tensors) src.Add(t.Name, t.DType, t.Shape, t.Data);
        return src;
    }

    private static float Round(float v, SafetensorsDType dtype) => dtype switch
    {
        SafetensorsDType.F16 => (float)(Half)v,
        SafetensorsDType.BF16 => BitConverter.Int32BitsToSingle(SyntheticValueGenerator.ToBFloat16Bits(v) << 16),
        _ => v,
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void Encode_matches_specs_and_decodes_to_the_same_matrix(QuantizedFormat format, int bits, bool sym)
    {
        using var w = QuantTestData.NormalMatrix(64, 96, bits * 10 + (sym ? 1 : 0));
        var scheme = new QuantizationScheme(bits, GroupSize: 40, Symmetric: sym); // 96 = 40 + 40 + 16: a partial group
        using var q = RtnQuantizer.Quantize(w, scheme);
        var specs = QuantizedModuleWriter.Specs(Prefix, 64, 96, scheme, format, SafetensorsDType.BF16);
        var encoded = QuantizedModuleWriter.Encode(Prefix, q, format, SafetensorsDType.BF16);
        Assert.Equal(specs.Select(s => (s.Name, s.DType, string.Join(",", s.Shape))),
            encoded.Select(e => (e.Name, e.DType, string.Join(",", e.Shape))));
        foreach (var e in encoded) Assert.Equal(e.Spec.ByteLength, e.Data.LongLength);

        var src = Source(encoded);
        var decoded = format == QuantizedFormat.Gptq
            ? GptqLayout.Decode(src, Prefix, bits, zerosMinusOne: true, groupSize: 40, "test")
            : CompressedTensorsLayout.Decode(src, Prefix, QuantizedModuleWriter.ToPacked(scheme), "test");
        var expected = q.ToUnpacked();
        var scaleType = format == QuantizedFormat.Gptq ? SafetensorsDType.F16 : SafetensorsDType.BF16;
        Assert.Equal(expected.Codes, decoded.Codes);
        Assert.Equal(expected.Zeros, decoded.Zeros);
        Assert.Equal(expected.GroupIndex, decoded.GroupIndex);
        Assert.Equal(expected.Scales.Select(s => Round(s, scaleType)), decoded.Scales);
        Assert.Equal(format == QuantizedFormat.CompressedTensors && sym ? 3 : 4, encoded.Count);
    }

    // Symmetric 4-bit: every zero point is 8, which GPTQ v1 stores as 8 − 1 = 7 in each nibble of qzeros: 0x77777777.
    // compressed-tensors stores no zero point for a symmetric scheme; its weight_shape is I64 [out, in].
    [Fact]
    public void Symmetric_zero_points_are_stored_as_the_formats_define_them()
    {
        using var w = QuantTestData.NormalMatrix(32, 64, 1);
        using var q = RtnQuantizer.Quantize(w, new QuantizationScheme(4, GroupSize: 32, Symmetric: true));
        var gptq = QuantizedModuleWriter.Encode(Prefix, q, QuantizedFormat.Gptq, SafetensorsDType.BF16);
        var qzeros = MemoryMarshal.Cast<byte, int>(gptq.Single(t => t.Name.EndsWith(".qzeros")).Data.AsSpan()).ToArray();
        Assert.Equal(2 * 4, qzeros.Length); // [2 groups, 32·4/32]
        Assert.All(qzeros, v => Assert.Equal(0x77777777, v));
        var gidx = MemoryMarshal.Cast<byte, int>(gptq.Single(t => t.Name.EndsWith(".g_idx")).Data.AsSpan()).ToArray();
        Assert.Equal(Enumerable.Range(0, 64).Select(c => c / 32), gidx);

        var ct = QuantizedModuleWriter.Encode(Prefix, q, QuantizedFormat.CompressedTensors, SafetensorsDType.BF16);
        Assert.DoesNotContain(ct, t => t.Name.EndsWith(".weight_zero_point"));
        var shape = ct.Single(t => t.Name.EndsWith(".weight_shape"));
        Assert.Equal(SafetensorsDType.I64, shape.DType);
        Assert.Equal([32L, 64L], MemoryMarshal.Cast<byte, long>(shape.Data.AsSpan()).ToArray());
    }

    // Asymmetric compressed-tensors zero points are the unsigned zero points z packed down the rows: 2-bit z = 1 for
    // every row of a [3, 1] zero-point matrix → 1 | 1 << 2 | 1 << 4 = 0x15 in one word.
    [Fact]
    public void Asymmetric_compressed_tensors_zero_points_pack_down_the_rows()
    {
        var m = new UnpackedMatrix(2, 3, 4, 1, [0, 1, 2, 3, 0, 1, 2, 3, 3, 2, 1, 0], [1f, 1f, 1f], [1f, 1f, 1f], [0, 0, 0, 0]);
        var enc = CompressedTensorsLayout.Encode(Prefix, m, new PackedScheme(2, -1, false), SafetensorsDType.F16, groupIndex: false);
        var zp = enc.Single(t => t.Name.EndsWith(".weight_zero_point"));
        Assert.Equal([1L, 1L], zp.Shape);
        Assert.Equal([0x15], MemoryMarshal.Cast<byte, int>(zp.Data.AsSpan()).ToArray());
        // codes 0,1,2,3 → 0 | 1<<2 | 2<<4 | 3<<6 = 0xE4; row 2 (3,2,1,0) → 3 | 2<<2 | 1<<4 = 0x1B.
        var packed = MemoryMarshal.Cast<byte, int>(enc.Single(t => t.Name.EndsWith(".weight_packed")).Data.AsSpan()).ToArray();
        Assert.Equal([0xE4, 0xE4, 0x1B], packed);
    }

    [Theory]
    [InlineData(QuantizedFormat.Gptq)]
    [InlineData(QuantizedFormat.CompressedTensors)]
    public void One_bit_is_refused_by_the_packed_formats(QuantizedFormat format)
    {
        var scheme = new QuantizationScheme(1, GroupSize: 32);
        var e = Assert.Throws<MoeCompressException>(() => QuantizedModuleWriter.Specs(Prefix, 32, 64, scheme, format, SafetensorsDType.BF16));
        Assert.Equal(ErrorKind.Usage, e.Kind);
        Assert.Contains("dequantized", e.Message);
        Assert.Contains(Prefix, e.Message);
        using var w = QuantTestData.NormalMatrix(32, 64, 2);
        using var q = RtnQuantizer.Quantize(w, scheme);
        Assert.Throws<MoeCompressException>(() => QuantizedModuleWriter.Encode(Prefix, q, format, SafetensorsDType.BF16));
        var config = Assert.Throws<MoeCompressException>(() =>
            QuantizationConfigBuilder.Build(format, new Dictionary<string, QuantizationScheme> { [Prefix] = scheme }, [], false));
        Assert.Contains("dequantized", config.Message);
    }

    [Fact]
    public void One_bit_is_written_dequantized_in_the_original_dtype()
    {
        using var w = QuantTestData.NormalMatrix(8, 20, 3);
        using var q = RtnQuantizer.Quantize(w, new QuantizationScheme(1, GroupSize: 8));
        var spec = Assert.Single(QuantizedModuleWriter.Specs(Prefix, 8, 20, q.Scheme, QuantizedFormat.Dequantized, SafetensorsDType.BF16));
        Assert.Equal((Prefix + ".weight", SafetensorsDType.BF16), (spec.Name, spec.DType));
        var enc = Assert.Single(QuantizedModuleWriter.Encode(Prefix, q, QuantizedFormat.Dequantized, SafetensorsDType.BF16));
        using var expected = q.Dequantize().to(ScalarType.BFloat16);
        Assert.Equal(expected.bytes.ToArray(), enc.Data);
        Assert.Null(QuantizationConfigBuilder.Build(QuantizedFormat.Dequantized, new Dictionary<string, QuantizationScheme> { [Prefix] = q.Scheme }, [], false));
    }

    [Fact]
    public void Gptq_needs_dimensions_in_multiples_of_32()
    {
        var e = Assert.Throws<MoeCompressException>(() =>
            QuantizedModuleWriter.Specs(Prefix, 64, 48, new QuantizationScheme(4), QuantizedFormat.Gptq, SafetensorsDType.BF16));
        Assert.Equal(ErrorKind.Usage, e.Kind);
        Assert.Contains("multiples of 32", e.Message);
        // compressed-tensors pads instead.
        var specs = QuantizedModuleWriter.Specs(Prefix, 50, 48, new QuantizationScheme(4, 16), QuantizedFormat.CompressedTensors, SafetensorsDType.BF16);
        Assert.Equal([50L, 6L], specs[0].Shape);
    }

    [Fact]
    public void Act_order_groups_need_weight_g_idx_in_compressed_tensors()
    {
        using var scope = NewDisposeScope();
        var w = QuantTestData.NormalMatrix(32, 64, 4);
        var x = QuantTestData.CorrelatedInputs(200, 64, 5);
        var scheme = new QuantizationScheme(4, GroupSize: 16);
        using var q = GptqQuantizer.Quantize(w, x.t().matmul(x), 200, scheme, new GptqOptions { ActOrder = true });
        var e = Assert.Throws<MoeCompressException>(() => QuantizedModuleWriter.Encode(Prefix, q, QuantizedFormat.CompressedTensors, SafetensorsDType.BF16));
        Assert.Equal(ErrorKind.InvalidValues, e.Kind);
        var enc = QuantizedModuleWriter.Encode(Prefix, q, QuantizedFormat.CompressedTensors, SafetensorsDType.BF16, actOrder: true);
        Assert.Contains(enc, t => t.Name == Prefix + ".weight_g_idx");
        var decoded = CompressedTensorsLayout.Decode(Source(enc), Prefix, QuantizedModuleWriter.ToPacked(scheme), "test");
        Assert.Equal(q.ToUnpacked().GroupIndex, decoded.GroupIndex);
        var gptq = GptqLayout.Decode(Source(QuantizedModuleWriter.Encode(Prefix, q, QuantizedFormat.Gptq, SafetensorsDType.BF16)), Prefix, 4, true, 16, "test");
        Assert.Equal(q.ToUnpacked().GroupIndex, gptq.GroupIndex);
        Assert.Equal(q.ToUnpacked().Codes, gptq.Codes);
    }

    [Fact]
    public void Gptq_v1_cannot_hold_a_zero_point_of_zero()
    {
        var m = new UnpackedMatrix(4, 32, 32, 1, new int[32 * 32], Enumerable.Repeat(1f, 32).ToArray(), new float[32], new int[32]);
        var e = Assert.Throws<MoeCompressException>(() => GptqLayout.Encode(Prefix, m));
        Assert.Equal(ErrorKind.InvalidValues, e.Kind);
    }
}
