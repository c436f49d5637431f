using MoECompress.Formats.Errors;
using MoECompress.Formats.Families;
using MoECompress.Formats.Safetensors;
using MoECompress.Formats.Synthetic;
using TorchSharp;

namespace MoECompress.Tests.Families;

public class ExpertWeightsTests
{
    /// <summary>Same shape and exactly equal values.</summary>
    private static bool Same(torch.Tensor a, torch.Tensor b) =>
        a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();

    [Fact]
    public void Mxfp4RowDecodesLowNibbleFirstWithPowerOfTwoScales()
    {
        // Group 0 (scale 127 → ×1): byte 0x21 → low 1 (0.5), high 2 (1.0); byte 0xF8 → low 8 (−0), high 15 (−6);
        // remaining bytes 0x00 → 0. Group 1 (scale 125 → ×0.25): byte 0x73 → low 3 (1.5), high 7 (6); byte 0x9C → low 12 (−2), high 9 (−0.5).
        var blocks = new byte[32];
        blocks[0] = 0x21; blocks[1] = 0xF8;
        blocks[16] = 0x73; blocks[17] = 0x9C;
        var output = new float[64];
        ExpertWeights.DecodeMxfp4Row(blocks, [127, 125], output);
        Assert.Equal(new[] { 0.5f, 1f, -0f, -6f }, output[..4]);
        Assert.True(output[4..32].All(v => v == 0));
        Assert.Equal(new[] { 0.375f, 1.5f, -0.5f, -0.125f }, output[32..36]);
        Assert.True(float.IsNegative(output[2]));
    }

    [Fact]
    public void GptOssMxfp4ExpertGateAndUpAreInterleavedRows()
    {
        // One expert, 2I = 4 rows (gate = rows 0, 2; up = rows 1, 3), H = 32 (one block of 32 values per row).
        // Row r: first byte = (2r+1) | (2r+2) << 4, i.e. values FP4[2r+1], FP4[2r+2]; scale 127 + r.
        var blocks = new byte[4 * 16];
        var scales = new byte[4];
        for (int r = 0; r < 4; r++)
        {
            blocks[r * 16] = (byte)((2 * r + 1) | ((2 * r + 2) << 4));
            scales[r] = (byte)(127 + r);
        }
        var src = new InMemoryTensorSource()
            .Add("w_blocks", SafetensorsDType.U8, [1, 4, 1, 16], blocks)
            .Add("w_scales", SafetensorsDType.U8, [1, 4, 1], scales);
        var gate = new ExpertTensorRef("w_blocks", ExpertLayout.FusedMxfp4, 0, 0, 2, Interleaved: true, ScalesName: "w_scales");
        using var g = ExpertWeights.Load(src, gate);
        using var u = ExpertWeights.Load(src, gate with { RowStart = 1 });
        Assert.Equal(new long[] { 2, 32 }, g.shape);
        // FP4 codes: 1 → 0.5, 2 → 1, 3 → 1.5, 4 → 2, 5 → 3, 6 → 4, 7 → 6, 8 → −0.
        // gate rows 0 (×1): 0.5, 1; row 2 (×4): codes 5, 6 → 12, 16.  up rows 1 (×2): codes 3, 4 → 3, 4; row 3 (×8): codes 7, 8 → 48, −0.
        Assert.Equal(new[] { 0.5f, 1f }, g[0].narrow(0, 0, 2).data<float>().ToArray());
        Assert.Equal(new[] { 12f, 16f }, g[1].narrow(0, 0, 2).data<float>().ToArray());
        Assert.Equal(new[] { 3f, 4f }, u[0].narrow(0, 0, 2).data<float>().ToArray());
        Assert.Equal(new[] { 48f, -0f }, u[1].narrow(0, 0, 2).data<float>().ToArray());
        Assert.Equal(0f, g[0][5].item<float>());
    }

    [Fact]
    public void FusedTransposedExpertIsTransposedAndDeinterleaved()
    {
        // gate_up_proj [E=2, H=3, 2I=4]: value = 100 e + 10 h + c.
        var values = new float[2 * 3 * 4];
        for (int e = 0; e < 2; e++) for (int h = 0; h < 3; h++) for (int c = 0; c < 4; c++) values[e * 12 + h * 4 + c] = 100 * e + 10 * h + c;
        var src = new InMemoryTensorSource().AddF32("gate_up_proj", [2, 3, 4], values)
            .AddF32("gate_up_proj_bias", [2, 4], [0, 1, 2, 3, 10, 11, 12, 13]);
        var up = new ExpertTensorRef("gate_up_proj", ExpertLayout.FusedTransposed, 1, 1, 2, Interleaved: true, BiasName: "gate_up_proj_bias");
        using var w = ExpertWeights.Load(src, up);
        // Expert 1, output columns 1 and 3 become rows: [[101, 111, 121], [103, 113, 123]].
        Assert.Equal(new long[] { 2, 3 }, w.shape);
        Assert.Equal(new[] { 101f, 111f, 121f, 103f, 113f, 123f }, w.data<float>().ToArray());
    }

    [Fact]
    public void Fp8ExpertIsScaledPer128Block()
    {
        // [2, 130] E4M3: code 0x38 = 1.0 everywhere, code 0x40 = 2.0 in row 1; scale_inv [1, 2] = [0.5, 4].
        var bytes = Enumerable.Repeat((byte)0x38, 260).ToArray();
        for (int c = 0; c < 130; c++) bytes[130 + c] = 0x40;
        var src = new InMemoryTensorSource()
            .Add("m.experts.0.down_proj.weight", SafetensorsDType.F8_E4M3, [2, 130], bytes)
            .AddF32("m.experts.0.down_proj.weight_scale_inv", [1, 2], [0.5f, 4f]);
        using var w = ExpertWeights.Load(src, new ExpertTensorRef("m.experts.0.down_proj.weight", ExpertLayout.PerExpert));
        var v = w.data<float>().ToArray();
        Assert.Equal(0.5f, v[0]);
        Assert.Equal(0.5f, v[127]);
        Assert.Equal(4f, v[128]);
        Assert.Equal(1f, v[130]);
        Assert.Equal(8f, v[259]);
    }

    [Fact]
    public void FusedQwenViewsEqualTheSlices()
    {
        using var dir = new TempDirectory();
        SyntheticCheckpoint.Write("qwen3-moe-fused", dir.Path, new SyntheticOptions { Seed = 3 });
        using var ckpt = ModelCheckpoint.Open(dir.Path);
        Assert.True(ckpt.MoE.FusedExperts);
        int i = ckpt.MoE.ExpertIntermediateSize;
        using var scope = torch.NewDisposeScope();
        var gateUp = ckpt.Tensors.ToTensor("model.layers.1.mlp.experts.gate_up_proj", torch.ScalarType.Float32);
        var down = ckpt.Tensors.ToTensor("model.layers.1.mlp.experts.down_proj", torch.ScalarType.Float32);
        for (int e = 0; e < ckpt.MoE.NumExperts; e += 5)
        {
            Assert.True(Same(ckpt.LoadExpert(1, e, ExpertProjection.Gate), gateUp[e].narrow(0, 0, i)));
            Assert.True(Same(ckpt.LoadExpert(1, e, ExpertProjection.Up), gateUp[e].narrow(0, i, i)));
            Assert.True(Same(ckpt.LoadExpert(1, e, ExpertProjection.Down), down[e]));
        }
        Assert.False(Same(ckpt.LoadExpert(1, 0, ExpertProjection.Gate), ckpt.LoadExpert(1, 1, ExpertProjection.Gate)));
    }

    [Fact]
    public void GraniteViewsEqualTheSlices()
    {
        using var dir = new TempDirectory();
        SyntheticCheckpoint.Write("granitemoe", dir.Path);
        using var ckpt = ModelCheckpoint.Open(dir.Path);
        int i = ckpt.MoE.ExpertIntermediateSize;
        using var scope = torch.NewDisposeScope();
        var input = ckpt.Tensors.ToTensor("model.layers.2.block_sparse_moe.input_linear.weight", torch.ScalarType.Float32);
        Assert.True(Same(ckpt.LoadExpert(2, 7, ExpertProjection.Up), input[7].narrow(0, i, i)));
        Assert.True(Same(ckpt.LoadExpert(2, 7, ExpertProjection.Gate), input[7].narrow(0, 0, i)));
    }

    [Fact]
    public void PerExpertIsTheNamedTensor()
    {
        using var dir = new TempDirectory();
        SyntheticCheckpoint.Write("mixtral", dir.Path);
        using var ckpt = ModelCheckpoint.Open(dir.Path);
        using var scope = torch.NewDisposeScope();
        var w3 = ckpt.Tensors.ToTensor("model.layers.3.block_sparse_moe.experts.6.w3.weight", torch.ScalarType.Float32);
        var loaded = ckpt.LoadExpert(3, 6, ExpertProjection.Up);
        Assert.Equal(torch.ScalarType.Float32, loaded.dtype);
        Assert.True(Same(loaded, w3));
        Assert.Throws<ArgumentOutOfRangeException>(() => ckpt.LoadExpert(3, 8, ExpertProjection.Up));
    }

    [Fact]
    public void GptOssSyntheticExpertDecodesFromItsBlocks()
    {
        using var dir = new TempDirectory();
        SyntheticCheckpoint.Write("gpt-oss", dir.Path);
        using var ckpt = ModelCheckpoint.Open(dir.Path);
        Assert.True(ckpt.MoE.Mxfp4Experts);
        int h = ckpt.MoE.HiddenSize, i = ckpt.MoE.ExpertIntermediateSize, e = 5;
        using var up = ckpt.LoadExpert(0, e, ExpertProjection.Up);
        using var down = ckpt.LoadExpert(0, e, ExpertProjection.Down);
        Assert.Equal(new long[] { i, h }, up.shape);
        Assert.Equal(new long[] { h, i }, down.shape);
        // Row 3 of "up" is row 2·3+1 = 7 of expert 5 in gate_up_proj_blocks.
        var blocks = ckpt.Tensors.GetBytes("model.layers.0.mlp.experts.gate_up_proj_blocks");
        var scales = ckpt.Tensors.GetBytes("model.layers.0.mlp.experts.gate_up_proj_scales");
        int groups = h / 32, row = e * 2 * i + 7;
        var expected = new float[h];
        ExpertWeights.DecodeMxfp4Row(blocks.Slice(row * groups * 16, groups * 16), scales.Slice(row * groups, groups), expected);
        Assert.Equal(expected, up[3].data<float>().ToArray());
        Assert.True(up.abs().max().item<float>() <= 6f / 32);  // scales ≤ 2^-5
        using var bias = ExpertWeights.LoadBias(ckpt.Tensors, ckpt.Family, ckpt.MoE, 0, e, ExpertProjection.Up)!;
        using var allBias = ckpt.Tensors.ToTensor("model.layers.0.mlp.experts.gate_up_proj_bias", torch.ScalarType.Float32);
        Assert.True(Same(bias, allBias[e].slice(0, 1, 2 * i, 2)));
    }
}
