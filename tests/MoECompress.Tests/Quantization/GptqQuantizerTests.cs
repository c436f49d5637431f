using MoECompress.Tests.Infrastructure;
using MoECompress.Compression.Quantization;
using static TorchSharp.torch;

namespace MoECompress.Tests.Quantization;

public class GptqQuantizerTests
{
    private static (Tensor X, Tensor H) Inputs(long tokens, long features, int seed)
    {
        var x = QuantTestData.CorrelatedInputs(tokens, features, seed);
        return (x, x.t().matmul(x));
    }

    [Fact]
    public void Eight_bits_reproduce_the_weights()
    {
        using var scope = NewDisposeScope();
        var w = QuantTestData.NormalMatrix(24, 96, 1);
        var (x, h) = Inputs(512, 96, 2);
        using var q = GptqQuantizer.Quantize(w, h, 512, new QuantizationScheme(8, GroupSize: 32));
        Assert.True(QuantizationError.Relative(w, q) < 0.01, $"relative error {QuantizationError.Relative(w, q)}");
        Assert.True(QuantTestData.OutputError(x, w, q.Dequantize()) < 0.01);
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(false, true)]
    public void Three_bits_beat_rtn_on_correlated_inputs(bool actOrder, bool sym)
    {
        using var scope = NewDisposeScope();
        var w = QuantTestData.NormalMatrix(32, 128, 3);
        var (x, h) = Inputs(1024, 128, 4);
        var scheme = new QuantizationScheme(3, GroupSize: 32, Symmetric: sym);
        using var gptq = GptqQuantizer.Quantize(w, h, 1024, scheme, new GptqOptions { ActOrder = actOrder });
        using var rtn = RtnQuantizer.Quantize(w, scheme);
        double eg = QuantTestData.OutputError(x, w, gptq.Dequantize());
        double er = QuantTestData.OutputError(x, w, rtn.Dequantize());
        Assert.True(eg < 0.8 * er, $"GPTQ output error {eg:0.0000} vs RTN {er:0.0000}");
        // The Hessian-based error estimate agrees with the explicit one.
        Tolerance.Close(eg, QuantizationError.RelativeOutput(w, gptq, h), 5e-3);
    }

    [Fact]
    public void One_bit_runs_with_the_sign_rule_and_beats_rtn()
    {
        using var scope = NewDisposeScope();
        var w = QuantTestData.NormalMatrix(16, 64, 5);
        var (x, h) = Inputs(512, 64, 6);
        var scheme = new QuantizationScheme(1, GroupSize: 32);
        using var gptq = GptqQuantizer.Quantize(w, h, 512, scheme);
        using var rtn = RtnQuantizer.Quantize(w, scheme);
        Assert.True(gptq.Codes.min().item<int>() >= 0 && gptq.Codes.max().item<int>() <= 1);
        Assert.True(gptq.Zeros.eq(0.5f).all().item<bool>());
        double eg = QuantTestData.OutputError(x, w, gptq.Dequantize());
        double er = QuantTestData.OutputError(x, w, rtn.Dequantize());
        Assert.True(eg < er, $"GPTQ 1-bit output error {eg:0.0000} vs RTN {er:0.0000}");
    }

    [Fact]
    public void Diagonal_hessian_gives_exactly_rtn()
    {
        // With H ∝ I the inverse Hessian is diagonal: no error reaches other columns, and every group's parameters are
        // computed from the original weights, so GPTQ is round-to-nearest.
        using var scope = NewDisposeScope();
        var w = QuantTestData.NormalMatrix(8, 80, 7);
        var h = eye(80) * 3f;
        var scheme = new QuantizationScheme(4, GroupSize: 32);
        using var gptq = GptqQuantizer.Quantize(w, h, 10, scheme);
        using var rtn = RtnQuantizer.Quantize(w, scheme);
        Assert.True(gptq.Codes.eq(rtn.Codes).all().item<bool>());
        Assert.True(gptq.Scales.allclose(rtn.Scales));
        Assert.True(gptq.Zeros.eq(rtn.Zeros).all().item<bool>());
        Assert.True(gptq.GroupIndex.eq(rtn.GroupIndex).all().item<bool>());
    }

    [Fact]
    public void Block_size_does_not_change_the_result()
    {
        // The lazy block update is an exact reformulation; groups that start inside a block (group 16 < block 64) or
        // span blocks (group 48 > block 8) must see the same, fully updated columns.
        using var scope = NewDisposeScope();
        var w = QuantTestData.NormalMatrix(16, 96, 8);
        var (_, h) = Inputs(400, 96, 9);
        foreach (int group in new[] { 16, 48 })
        {
            var scheme = new QuantizationScheme(3, GroupSize: group);
            using var reference = GptqQuantizer.Quantize(w, h, 400, scheme, new GptqOptions { BlockSize = 1 });
            foreach (int block in new[] { 8, 64, 128 })
            {
                using var q = GptqQuantizer.Quantize(w, h, 400, scheme, new GptqOptions { BlockSize = block });
                long differing = q.Codes.ne(reference.Codes).sum().item<long>();
                Assert.True(differing <= 2, $"group {group}, block {block}: {differing} of {w.numel()} codes differ from block size 1");
            }
        }
    }

    [Fact]
    public void Act_order_forms_groups_in_descending_hessian_order()
    {
        using var scope = NewDisposeScope();
        var w = QuantTestData.NormalMatrix(8, 64, 10);
        var (x, h) = Inputs(300, 64, 11);
        using var q = GptqQuantizer.Quantize(w, h, 300, new QuantizationScheme(4, GroupSize: 16), new GptqOptions { ActOrder = true });
        var order = h.diagonal().argsort(descending: true).data<long>().ToArray();
        var gidx = q.GroupIndex.data<int>().ToArray();
        for (int j = 0; j < order.Length; j++)
            Assert.Equal(j / 16, gidx[order[j]]);
        Assert.False(gidx.SequenceEqual(Enumerable.Range(0, 64).Select(c => c / 16)), "act-order should permute the groups here");
        Assert.All(Enumerable.Range(0, 4), g => Assert.Equal(16, gidx.Count(v => v == g)));
        // Ŵ is built from the original column order and still approximates W.
        Assert.True(QuantTestData.OutputError(x, w, q.Dequantize()) < 0.15);
    }

    [Fact]
    public void Dead_inputs_get_zero_weights()
    {
        using var scope = NewDisposeScope();
        var w = QuantTestData.NormalMatrix(8, 32, 12);
        var x = QuantTestData.CorrelatedInputs(200, 32, 13);
        x.select(1, 5).zero_();
        var h = x.t().matmul(x);
        using var q = GptqQuantizer.Quantize(w, h, 200, new QuantizationScheme(4, GroupSize: -1));
        Assert.True(q.Dequantize().select(1, 5).eq(0f).all().item<bool>());
    }

    [Fact]
    public void Zero_tokens_and_wrong_shapes_are_refused()
    {
        using var scope = NewDisposeScope();
        var w = QuantTestData.NormalMatrix(4, 32, 14);
        var h = eye(32);
        Assert.Throws<ArgumentException>(() => GptqQuantizer.Quantize(w, h, 0, new QuantizationScheme(4)));
        Assert.Throws<ArgumentException>(() => GptqQuantizer.Quantize(w, eye(16), 10, new QuantizationScheme(4)));
        // Inputs are left alone.
        var before = w.clone();
        using (GptqQuantizer.Quantize(w, h, 10, new QuantizationScheme(4, GroupSize: 16))) { }
        Assert.True(w.eq(before).all().item<bool>());
        Assert.True(h.eq(eye(32)).all().item<bool>());
    }
}
