using MoECompress.Tests.Infrastructure;
using MoECompress.Compression.Quantization;
using MoECompress.Formats.Errors;
using static TorchSharp.torch;

namespace MoECompress.Tests.Quantization;

/// <summary>Round-to-nearest group quantization on hand-computed 1×4 rows.</summary>
public class RtnQuantizerTests
{
    private static (int[] Codes, float[] Scales, float[] Zeros, int[] Groups, float[] Dequantized) Run(float[] row, QuantizationScheme s)
    {
        using var w = tensor(row, [1, row.Length]);
        using var q = RtnQuantizer.Quantize(w, s);
        using var d = q.Dequantize();
        return (q.Codes.data<int>().ToArray(), q.Scales.data<float>().ToArray(), q.Zeros.data<float>().ToArray(),
            q.GroupIndex.data<int>().ToArray(), d.data<float>().ToArray());
    }

    // 2-bit asym, w = [−1, 0, 0.5, 2]: s = (2 − (−1)) / 3 = 1, z = round(1 / 1) = 1;
    // codes = clamp(round(w / s) + z) = [−1+1, 0+1, round(0.5)=0 (half to even) +1, 2+1] = [0, 1, 1, 3]; Ŵ = [−1, 0, 0, 2].
    [Fact]
    public void Asymmetric_two_bits()
    {
        var r = Run([-1f, 0f, 0.5f, 2f], new QuantizationScheme(2, GroupSize: -1));
        Assert.Equal([0, 1, 1, 3], r.Codes);
        Assert.Equal([1f], r.Scales);
        Assert.Equal([1f], r.Zeros);
        Assert.Equal([-1f, 0f, 0f, 2f], r.Dequantized);
    }

    // 3-bit asym, w = [−0.7, 0.1, 0.35, 1.4]: s = 2.1 / 7 = 0.3, z = round(0.7 / 0.3 = 2.33) = 2;
    // w / s = [−2.33, 0.33, 1.17, 4.67] → round [−2, 0, 1, 5] → +2 → [0, 2, 3, 7]; Ŵ = 0.3·[−2, 0, 1, 5] = [−0.6, 0, 0.3, 1.5].
    [Fact]
    public void Asymmetric_three_bits()
    {
        var r = Run([-0.7f, 0.1f, 0.35f, 1.4f], new QuantizationScheme(3, GroupSize: 4));
        Assert.Equal([0, 2, 3, 7], r.Codes);
        Tolerance.Close(0.3f, r.Scales[0], Tolerance.Float32);
        Assert.Equal([2f], r.Zeros);
        float[] expected = [-0.6f, 0f, 0.3f, 1.5f];
        for (int i = 0; i < 4; i++) Tolerance.Close(expected[i], r.Dequantized[i], Tolerance.Float32, 1e-6);
    }

    // 4-bit sym, w = [−7.5, 0.4, 1.6, 7.5]: s = 2·7.5 / 15 = 1, z = 2^3 = 8; round(w / s) = [−8 (half to even), 0, 2, 8]
    // → +8 → [0, 8, 10, 16 → clamped 15]; Ŵ = [−8, 0, 2, 7] (GPTQ's symmetric grid reaches −8s but only +7s).
    [Fact]
    public void Symmetric_four_bits_uses_gptq_zero_point()
    {
        var r = Run([-7.5f, 0.4f, 1.6f, 7.5f], new QuantizationScheme(4, GroupSize: 128, Symmetric: true));
        Assert.Equal([0, 8, 10, 15], r.Codes);
        Assert.Equal([1f], r.Scales);
        Assert.Equal([8f], r.Zeros);
        Assert.Equal([-8f, 0f, 2f, 7f], r.Dequantized);
    }

    // Group size 3 on 4 columns: groups [0..2] and a partial group [3].
    // Group 0, w = [−1, 0.5, 2] (2-bit asym): s = 1, z = 1 → codes [0, round(0.5)=0 +1 = 1, 3].
    // Group 1, w = [0.9]: range [min(0.9, 0), 0.9] = [0, 0.9] → s = 0.3, z = round(0) = 0, which the GPTQ v1 layout cannot
    // store (it keeps z − 1), so the grid widens to s = 0.9 / (3 − 1) = 0.45, z = 1: code round(0.9 / 0.45) + 1 = 3,
    // Ŵ = 0.45·(3 − 1) = 0.9.
    [Fact]
    public void Partial_last_group_gets_its_own_parameters()
    {
        var r = Run([-1f, 0.5f, 2f, 0.9f], new QuantizationScheme(2, GroupSize: 3));
        Assert.Equal([0, 0, 0, 1], r.Groups);
        Assert.Equal([0, 1, 3, 3], r.Codes);
        Assert.Equal([1f, 0.45f], r.Scales);
        Assert.Equal([1f, 1f], r.Zeros);
        Assert.Equal([-1f, 0f, 2f, 0.9f], r.Dequantized);
    }

    // 1-bit: sign × mean |w| per group: w = [−1, 2, −3, 0.5], m = 6.5 / 4 = 1.625; codes = [0, 1, 0, 1];
    // stored s' = 2m = 3.25, z = 0.5 so that s'·(q − z) = ±m.
    [Fact]
    public void One_bit_is_sign_times_mean_absolute_value()
    {
        var r = Run([-1f, 2f, -3f, 0.5f], new QuantizationScheme(1, GroupSize: -1));
        Assert.Equal([0, 1, 0, 1], r.Codes);
        Assert.Equal([3.25f], r.Scales);
        Assert.Equal([0.5f], r.Zeros);
        Assert.Equal([-1.625f, 1.625f, -1.625f, 1.625f], r.Dequantized);
    }

    [Fact]
    public void All_zero_row_quantizes_to_zero()
    {
        var r = Run([0f, 0f, 0f, 0f], new QuantizationScheme(4, GroupSize: -1));
        Assert.All(r.Dequantized, v => Assert.Equal(0f, v));
        var s = Run([0f, 0f, 0f, 0f], new QuantizationScheme(3, GroupSize: -1, Symmetric: true));
        Assert.All(s.Dequantized, v => Assert.Equal(0f, v));
    }

    [Theory]
    [InlineData(2, false)]
    [InlineData(3, false)]
    [InlineData(4, true)]
    [InlineData(8, false)]
    public void Error_shrinks_with_bits_and_stays_within_half_a_step(int bits, bool sym)
    {
        using var w = QuantTestData.NormalMatrix(16, 100, bits);
        var scheme = new QuantizationScheme(bits, GroupSize: 32, Symmetric: sym);
        using var q = RtnQuantizer.Quantize(w, scheme);
        using var d = q.Dequantize();
        Assert.Equal([16L, 4L], q.Scales.shape); // 100 columns in groups of 32: 32, 32, 32, 4
        // Every weight is within s/2 of its reconstruction (the symmetric grid's top value max|w| = 2^(b−1)·s − s/2
        // rounds to the clamped top code 2^(b−1) − 1: still s/2 away).
        var step = q.Scales.index_select(1, q.GroupIndex.to(ScalarType.Int64));
        var ratio = ((w - d).abs() / step).max().item<float>();
        Assert.True(ratio <= 0.5001f, $"max |w − ŵ| / s = {ratio}");
        Assert.True(q.Codes.min().item<int>() >= 0 && q.Codes.max().item<int>() <= scheme.MaxCode);
    }

    [Fact]
    public void Input_is_not_modified_and_unsupported_widths_are_refused()
    {
        using var w = QuantTestData.NormalMatrix(4, 8, 3);
        using var before = w.clone();
        using (RtnQuantizer.Quantize(w, new QuantizationScheme(3, GroupSize: 4))) { }
        Assert.True(w.eq(before).all().item<bool>());
        var e = Assert.Throws<MoeCompressException>(() => RtnQuantizer.Quantize(w, new QuantizationScheme(5)));
        Assert.Equal(ErrorKind.Usage, e.Kind);
    }
}
