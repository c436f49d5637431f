using MoECompress.Compression.Merging;
using MoECompress.Compression.Model;
using MoECompress.Compression.Surgery;
using MoECompress.Formats.Families;
using MoECompress.Tests.Calibration;
using MoECompress.Tests.Evaluation;
using static TorchSharp.torch;

namespace MoECompress.Tests.Merging;

/// <summary>
/// Merging two identical experts is lossless. Which router rule makes it exact: both members have the same weights and
/// the same router row, so the merged expert equals either of them and the frequency-weighted row Σ w_m row_m equals
/// that row (for any weights). With softmax scoring, top-k and renormalisation of the chosen weights (Mixtral), the
/// model is then exactly unchanged when top_k = 1: the best logit, hence the chosen expert, is the same, and its
/// renormalised weight is 1 whether the softmax ran over E or E − 1 logits. (With top_k ≥ 2 it is not exact: a token
/// that chose both twins gives the freed slot to another expert after the merge.)
/// </summary>
public class LosslessMergeTests
{
    /// <summary>Makes expert <paramref name="to"/> a copy of <paramref name="from"/> (router row included), its
    /// intermediate neurons optionally shuffled (the same function, another neuron order).</summary>
    private static void CopyExpert(TinyEvalModel model, int layer, int from, int to, bool shuffled = false)
    {
        var p = $"model.layers.{layer}.block_sparse_moe.";
        var order = Enumerable.Range(0, TinyEvalModel.Intermediate).Select(i => (long)(shuffled ? (i * 5 + 3) % TinyEvalModel.Intermediate : i)).ToArray();
        using var index = tensor(order, ScalarType.Int64);
        foreach (var w in new[] { "w1", "w2", "w3" })
            model.Tensors.Set($"{p}experts.{to}.{w}.weight", model.Tensors.Get($"{p}experts.{from}.{w}.weight").index_select(w == "w2" ? 1 : 0, index));
        var router = model.Tensors.Get(p + "gate.weight").clone();
        router[to].copy_(router[from]);
        model.Tensors.Set(p + "gate.weight", router);
    }

    [Theory]
    [InlineData(MergeMethod.Subspace, false, false)]
    [InlineData(MergeMethod.Average, false, false)]
    [InlineData(MergeMethod.Average, true, true)]   // a neuron-shuffled twin is identical after alignment
    [InlineData(MergeMethod.Subspace, true, true)]
    public void Merging_two_identical_experts_with_the_weighted_router_row_leaves_the_logits_unchanged(MergeMethod method, bool shuffled, bool align)
    {
        using var scope = NewDisposeScope();
        using var model = TinyEvalModel.Create(experts: 4, seed: 77);
        model.Config["num_experts_per_tok"] = 1;
        for (var l = 0; l < TinyEvalModel.Layers; l++) CopyExpert(model, l, from: 2, to: 0, shuffled);
        var input = TinyCalibrationModel.NewPath("lossless-in");
        var output = TinyCalibrationModel.NewPath("lossless-out");
        model.Save(input);

        using var checkpoint = ModelCheckpoint.Open(input);
        IReadOnlyList<ExpertCluster> clusters =
        [
            new ExpertCluster([0, 2], [0.3, 0.7], 2),
            ExpertCluster.FromFrequencies([1], [1, 1, 1, 1]),
            ExpertCluster.FromFrequencies([3], [1, 1, 1, 1]),
        ];
        var layers = Enumerable.Range(0, TinyEvalModel.Layers).ToDictionary(l => l, _ => clusters);
        using var weights = new MergedExpertWeights(checkpoint, layers, new ExpertMergeSettings { Method = method, Align = align });
        var plan = new ExpertSurgeryPlan
        {
            Operation = "merge",
            Weights = weights,
            Layers = layers.ToDictionary(kv => kv.Key, kv => (IReadOnlyList<OutputExpert>)kv.Value.Select(c => c.IsMerged
                ? new OutputExpert(c.Representative, c.Members, c.Weights, RouterRowRule.Weighted, Merged: true)
                : OutputExpert.Copy(c.Members[0])).ToList()),
        };
        ExpertSurgery.Write(checkpoint, plan, output, new ExpertSurgeryOptions { FlushToDisk = false });

        using var merged = ModelCheckpoint.Open(output);
        Assert.Equal(3, merged.MoE.NumExperts);
        using var before = new ModelEngine(checkpoint).LoadResident();
        using var after = new ModelEngine(merged).LoadResident();
        var tokens = TinyCalibrationModel.RandomSequences(3, 24, model.VocabSize, 5);
        var worst = 0.0;
        foreach (var seq in tokens)
        {
            var a = before.Forward(seq);
            var b = after.Forward(seq);
            worst = Math.Max(worst, (a - b).abs().max().item<float>());
        }
        Assert.True(worst < 1e-4, $"max |Δ logit| = {worst}");

        // The merged expert's weights are the twin's weights.
        var twin = checkpoint.LoadExpert(0, 2, ExpertProjection.Gate);
        Assert.True((merged.LoadExpert(0, 0, ExpertProjection.Gate) - twin).abs().max().item<float>() < 1e-5);
        Assert.Equal(2, weights.Statistics.Count(kv => kv.Key.Expert == 0));
    }

    [Fact]
    public void Merging_a_shuffled_twin_without_alignment_changes_the_logits()
    {
        // The control of the test above: the same plan over experts that are not identical (here: a twin whose neurons are
        // shuffled, merged without alignment) is not lossless.
        using var scope = NewDisposeScope();
        using var model = TinyEvalModel.Create(experts: 4, seed: 77);
        model.Config["num_experts_per_tok"] = 1;
        for (var l = 0; l < TinyEvalModel.Layers; l++) CopyExpert(model, l, from: 2, to: 0, shuffled: true);
        var input = TinyCalibrationModel.NewPath("lossy-in");
        var output = TinyCalibrationModel.NewPath("lossy-out");
        model.Save(input);
        using var checkpoint = ModelCheckpoint.Open(input);
        IReadOnlyList<ExpertCluster> clusters =
            [new ExpertCluster([0, 2], [0.3, 0.7], 2), ExpertCluster.FromFrequencies([1], [1, 1, 1, 1]), ExpertCluster.FromFrequencies([3], [1, 1, 1, 1])];
        var layers = Enumerable.Range(0, TinyEvalModel.Layers).ToDictionary(l => l, _ => clusters);
        using var weights = new MergedExpertWeights(checkpoint, layers, new ExpertMergeSettings { Method = MergeMethod.Average, Align = false });
        var plan = new ExpertSurgeryPlan
        {
            Operation = "merge",
            Weights = weights,
            Layers = layers.ToDictionary(kv => kv.Key, kv => (IReadOnlyList<OutputExpert>)kv.Value.Select(c => c.IsMerged
                ? new OutputExpert(c.Representative, c.Members, c.Weights, RouterRowRule.Weighted, Merged: true)
                : OutputExpert.Copy(c.Members[0])).ToList()),
        };
        ExpertSurgery.Write(checkpoint, plan, output, new ExpertSurgeryOptions { FlushToDisk = false });
        using var merged = ModelCheckpoint.Open(output);
        using var before = new ModelEngine(checkpoint).LoadResident();
        using var after = new ModelEngine(merged).LoadResident();
        var seq = TinyCalibrationModel.RandomSequences(1, 24, model.VocabSize, 5)[0];
        Assert.True((before.Forward(seq) - after.Forward(seq)).abs().max().item<float>() > 1e-3);
    }
}
