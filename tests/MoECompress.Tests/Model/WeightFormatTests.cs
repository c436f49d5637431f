using MoECompress.Compression.Model;
using MoECompress.Formats.Safetensors;
using TorchSharp;
using static TorchSharp.torch;

namespace MoECompress.Tests.Model;

public class WeightFormatTests
{
    private static readonly int[] Tokens = TinyModel.Tokens(61, 6);

    private static Tensor Logits(TinyModel model)
    {
        using var resident = model.Engine().LoadResident();
        return resident.Forward(Tokens);
    }

    [Fact]
    public void FusedQwen3ExpertsGiveTheSameLogitsAsPerExpertTensors()
    {
        using var perExpert = TinyModel.Create("qwen3_moe", layers: 2);
        using var fused = TinyModel.Create("qwen3_moe", layers: 2);
        using (var scope = NewDisposeScope())
        {
            for (var l = 0; l < 2; l++)
            {
                var p = $"model.layers.{l}.mlp.experts.";
                var gateUp = new List<Tensor>();
                var down = new List<Tensor>();
                for (var e = 0; e < fused.MoE.NumExperts; e++)
                {
                    gateUp.Add(cat(new[] { fused.Source.Get($"{p}{e}.gate_proj.weight"), fused.Source.Get($"{p}{e}.up_proj.weight") }, 0));
                    down.Add(fused.Source.Get($"{p}{e}.down_proj.weight").clone());
                    foreach (var proj in new[] { "gate_proj", "up_proj", "down_proj" }) fused.Source.Remove($"{p}{e}.{proj}.weight");
                }
                fused.Source.Set(p + "gate_up_proj", stack(gateUp, 0));
                fused.Source.Set(p + "down_proj", stack(down, 0));
            }
        }
        Assert.True(fused.Family.ResolveLayout(fused.MoE, fused.Source.Names).FusedExperts);
        using var a = Logits(perExpert);
        using var b = Logits(fused);
        Assert.True(a.eq(b).all().item<bool>());
    }

    [Fact]
    public void Bf16WeightsAreUpcastExactly()
    {
        using var rounded = TinyModel.Create("deepseek_v3", layers: 2);
        using var bf16 = TinyModel.Create("deepseek_v3", layers: 2);
        using (var scope = NewDisposeScope())
        {
            foreach (var name in rounded.Source.Names.ToArray())
            {
                var t = rounded.Source.Get(name).to(ScalarType.BFloat16);
                rounded.Source.Set(name, t.to(ScalarType.Float32));
                bf16.Source.Set(name, t);
            }
        }
        Assert.Equal(SafetensorsDType.BF16, bf16.Source.GetInfo("model.layers.1.mlp.experts.0.gate_proj.weight").DType);
        using var a = Logits(rounded);
        using var b = Logits(bf16);
        Assert.True(a.eq(b).all().item<bool>());
    }

    [Fact]
    public void ExpertsKeptInBFloat16GiveTheSameLogitsForABf16Checkpoint()
    {
        using var bf16 = TinyModel.Create("qwen2_moe", layers: 2);
        using (var scope = NewDisposeScope())
            foreach (var name in bf16.Source.Names.ToArray())
                bf16.Source.Set(name, bf16.Source.Get(name).to(ScalarType.BFloat16));
        using var a = Logits(bf16);
        var engine = new ModelEngine(bf16.Source, bf16.Family, bf16.MoE, bf16.Config) { KeepExpertWeightsInBFloat16 = true };
        using (var layer = engine.LoadLayer(0))
            Assert.Equal(ScalarType.BFloat16, layer.MoE!.Experts[0].Gate.dtype);
        using var resident = engine.LoadResident();
        using var b = resident.Forward(Tokens);
        Assert.True(a.eq(b).all().item<bool>());
    }

    [Fact]
    public void Fp8WeightsAreMultipliedByTheirBlockScales()
    {
        using var model = TinyModel.Create("mixtral", layers: 1);
        const string name = "model.layers.0.self_attn.q_proj.weight";
        using var original = model.Source.Get(name).clone();
        model.Source.DeclareDType(name, SafetensorsDType.F8_E4M3);
        using (var scope = NewDisposeScope())
            model.Source.Set(name + "_scale_inv", tensor(new float[] { 0.25f }).reshape(1, 1));
        using var layer = model.Engine().LoadLayer(0);
        var q = ((GroupedQueryAttention)layer.Attention).Q.Weight;
        using var expected = original * 0.25f;
        Assert.True(q.allclose(expected, 0, 0));
    }
}
