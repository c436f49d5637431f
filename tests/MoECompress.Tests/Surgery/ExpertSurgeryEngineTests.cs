using MoECompress.Compression.Model;
using MoECompress.Compression.Surgery;
using MoECompress.Formats.Families;
using MoECompress.Formats.Synthetic;
using MoECompress.Tests.Families;
using static TorchSharp.torch;

namespace MoECompress.Tests.Surgery;

/// <summary>
/// A pruned checkpoint loads in the forward engine and computes exactly what the original model computes when the
/// dropped experts are masked out of routing (the engine's what-if pruning), whatever the new expert order.
/// </summary>
public class ExpertSurgeryEngineTests
{
    public static IEnumerable<object[]> Presets => [["mixtral"], ["qwen2-moe"], ["deepseek-v3"]];

    [Theory]
    [MemberData(nameof(Presets))]
    public void Pruned_model_runs_and_matches_masked_routing(string preset)
    {
        using var dir = new TempDirectory();
        string inDir = dir.Sub("in"), outDir = dir.Sub("out");
        SyntheticCheckpoint.Write(preset, inDir, new SyntheticOptions { Seed = 21 });
        using var input = ModelCheckpoint.Open(inDir);
        int target = SurgeryFixtures.PruneTarget(input.MoE);
        var plan = SurgeryFixtures.PrunePlan(input, target);
        ExpertSurgery.Write(input, plan, outDir, new ExpertSurgeryOptions { FlushToDisk = false });

        int[] tokens = [1, 17, 42, 99, 3, 250, 7, 128, 64, 5, 200, 31];
        using var output = ModelCheckpoint.Open(outDir);
        using var scope = NewDisposeScope();
        Tensor pruned;
        using (var model = new ModelEngine(output).LoadResident())
        {
            pruned = model.Forward(tokens);
            Assert.All(model.Layers.Where(l => l.IsMoE), l => Assert.Equal(target, l.MoE!.Experts.Count));
        }
        Tensor masked;
        using (var model = new ModelEngine(input).LoadResident())
            masked = MaskedForward(model, tokens, plan, input.MoE.NumExperts);

        Assert.Equal(masked.shape, pruned.shape);
        Assert.True(pruned.isfinite().all().item<bool>());
        var diff = (pruned - masked).abs().max().item<float>();
        Assert.True(diff < 1e-3f, $"pruned logits differ from masked routing by {diff}");
    }

    /// <summary>The original model with each MoE layer routed only to the plan's kept experts.</summary>
    private static Tensor MaskedForward(ResidentModel model, int[] tokens, ExpertSurgeryPlan plan, int experts)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        using var rope = model.Engine.Rotary.Tables(tokens.Length);
        var h = model.Embedding.Lookup(tokens).unsqueeze(0);
        long hidden = h.shape[2];
        foreach (var layer in model.Layers)
        {
            var a = h + layer.Attention.Forward(layer.InputNorm.Forward(h), rope);
            var n = layer.PostAttentionNorm.Forward(a);
            Tensor mlp;
            if (layer.MoE is { } moe)
            {
                var kept = plan.Layers[layer.Index].Select(o => o.Representative).ToHashSet();
                var options = new MoEForwardOptions { KeptExperts = Enumerable.Range(0, experts).Select(kept.Contains).ToList() };
                mlp = moe.Forward(n.reshape(tokens.Length, hidden), options).view(1, tokens.Length, hidden);
            }
            else mlp = layer.Mlp!.Forward(n);
            h = a + mlp;
        }
        return model.Head.Logits(h[0]).MoveToOuterDisposeScope();
    }
}
