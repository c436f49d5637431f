using MoECompress.Tests.Infrastructure;
using System.Text.Json.Nodes;
using MoECompress.Compression.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace MoECompress.Tests.Model;

public class ModelForwardTests
{
    [Theory]
    [MemberData(nameof(TinyModel.Kinds), MemberType = typeof(TinyModel))]
    public void ChangingALaterTokenLeavesEarlierLogitsUnchanged(string kind)
    {
        using var model = TinyModel.Create(kind, layers: 2);
        using var resident = model.Engine().LoadResident();
        using var scope = NewDisposeScope();
        var a = TinyModel.Tokens(21, 6);
        var b = (int[])a.Clone();
        b[4] = (b[4] + 5) % TinyModel.Vocab;
        var la = resident.Forward(a);
        var lb = resident.Forward(b);
        Assert.True(la.narrow(0, 0, 4).allclose(lb.narrow(0, 0, 4), 1e-6, 1e-6), $"{kind}: positions 0..3 changed");
        Assert.False(la.narrow(0, 4, 2).allclose(lb.narrow(0, 4, 2), 1e-3, 1e-3), $"{kind}: positions 4..5 should change");
    }

    [Theory]
    [InlineData("qwen3_moe")]
    [InlineData("mixtral")]
    public void GroupedQueryAttentionEqualsMultiHeadWithRepeatedKeyValueHeads(string kind)
    {
        using var gqa = TinyModel.Create(kind, layers: 2, configure: c => c["num_attention_heads"] = 4);
        using var mha = TinyModel.Create(kind, layers: 2, configure: c =>
        {
            c["num_attention_heads"] = 4;
            c["num_key_value_heads"] = 4;
        });
        using (var scope = NewDisposeScope())
        {
            foreach (var name in gqa.Source.Names)
            {
                var t = gqa.Source.Get(name);
                // kv head j serves query heads 4j..4j+3 (one kv head here): repeat its rows 4 times.
                if (name.EndsWith("k_proj.weight", StringComparison.Ordinal) || name.EndsWith("v_proj.weight", StringComparison.Ordinal))
                    t = cat(Enumerable.Repeat(t, 4).ToArray(), 0);
                mha.Source.Set(name, t);
            }
        }
        using var a = gqa.Engine().LoadResident();
        using var b = mha.Engine().LoadResident();
        using var s2 = NewDisposeScope();
        var tokens = TinyModel.Tokens(31, 6);
        var la = a.Forward(tokens);
        var lb = b.Forward(tokens);
        Assert.True(la.allclose(lb, 1e-5, 1e-5), $"max |diff| {(la - lb).abs().max().item<float>()}");
    }

    [Theory]
    [MemberData(nameof(TinyModel.Kinds), MemberType = typeof(TinyModel))]
    public void AnExpertThatReceivesNoTokenCannotChangeTheOutput(string kind)
    {
        // 8 experts, top-2, 2 tokens: at most 4 experts per layer see a token, so at least 4 see none.
        using var model = TinyModel.Create(kind, layers: 2, experts: 8);
        var tokens = TinyModel.Tokens(41, 2);
        var used = new HashSet<(int Layer, int Expert)>();
        var observer = new DelegateObserver(onExpert: a => used.Add((a.Layer, a.Expert)));
        Tensor baseline;
        using (var resident = model.Engine().LoadResident())
            baseline = resident.Forward(tokens, observer);
        using var _ = baseline;
        var moeLayers = Enumerable.Range(0, model.MoE.NumLayers).Where(l => model.MoE.IsMoELayer[l]).ToArray();
        var unused = moeLayers.SelectMany(l => Enumerable.Range(0, 8).Select(e => (l, e))).Where(p => !used.Contains(p)).ToArray();
        Assert.True(unused.Length >= 4 * moeLayers.Length);

        using (var perturbed = TinyModel.Create(kind, layers: 2, experts: 8))
        {
            foreach (var (l, e) in unused) perturbed.PerturbExpert(l, e, seed: 100 + l * 10 + e);
            using var resident = perturbed.Engine().LoadResident();
            using var logits = resident.Forward(tokens);
            Assert.True(baseline.eq(logits).all().item<bool>(), $"{kind}: perturbing unused experts changed the logits");
        }

        // Control: perturbing a used expert does change them.
        using (var perturbed = TinyModel.Create(kind, layers: 2, experts: 8))
        {
            var (l, e) = used.First();
            perturbed.PerturbExpert(l, e, seed: 7);
            using var resident = perturbed.Engine().LoadResident();
            using var logits = resident.Forward(tokens);
            Assert.False(baseline.allclose(logits, 1e-4, 1e-4), $"{kind}: perturbing used expert {e} of layer {l} changed nothing");
        }
    }

    [Fact]
    public void CorrectionBiasSteersSelectionInTheModel()
    {
        // A large e_score_correction_bias on expert 3 makes every token choose it; its weight stays the plain
        // sigmoid score, so removing the bias again restores the original routing.
        using var model = TinyModel.Create("deepseek_v3", layers: 2);
        var tokens = TinyModel.Tokens(51, 4);
        const int layer = 1;
        var biasName = model.Family.CorrectionBiasName(layer, model.MoE)!;
        var choices = new List<long[]>();
        using (var scope = NewDisposeScope())
            model.Source.Set(biasName, tensor(new float[] { 0, 0, 0, 10 }));
        var observer = new DelegateObserver(onMoEBlock: a =>
        {
            choices.Add(a.Routing.TopKIndices.data<long>().ToArray());
            var weights = a.Routing.TopKWeights.data<float>().ToArray();
            var scores = a.Routing.Scores.data<float>().ToArray();
            var idx = a.Routing.TopKIndices.data<long>().ToArray();
            for (var t = 0; t < a.Routing.TokenCount; t++)
            {
                var s0 = scores[t * 4 + idx[t * 2]];
                var s1 = scores[t * 4 + idx[t * 2 + 1]];
                Tolerance.Close(2.5 * s0 / (s0 + s1), weights[t * 2], Tolerance.Float32, 1e-7);
            }
        });
        using var resident = model.Engine().LoadResident();
        using var logits = resident.Forward(tokens, observer);
        Assert.All(Enumerable.Range(0, tokens.Length), t => Assert.Contains(3L, choices[0].Skip(t * 2).Take(2)));
    }

    [Fact]
    public void UnsupportedFamiliesFailWithAClearMessage()
    {
        // MiniCPM-MoE: a recognised family the engine does not run (no reference config: the Mixtral one relabelled).
        var config = Formats.Synthetic.ReferenceConfigs.Load("Mixtral-8x7B-v0.1");
        config["architectures"] = new JsonArray("MiniCPMForCausalLM");
        config["model_type"] = "minicpm";
        config["num_experts"] = config["num_local_experts"]!.DeepClone();
        var (family, moe) = Formats.Families.FamilyRegistry.Read(config, "minicpm");
        Assert.False(ModelEngine.IsSupported(config));
        var ex = Assert.Throws<Formats.Errors.MoeCompressException>(() => ModelEngine.EnsureSupported(family, config));
        Assert.Equal(Formats.Errors.ErrorKind.Infeasible, ex.Kind);
        Assert.Contains($"forward pass not supported for family {family.Name}", ex.Message);
        Assert.Contains("data-free commands", ex.Message);
        using var empty = new InMemoryTensorSource();
        Assert.Throws<Formats.Errors.MoeCompressException>(() => new ModelEngine(empty, family, moe, config));
    }

    [Fact]
    public void MissingTensorIsNamedInTheError()
    {
        using var model = TinyModel.Create("mixtral", layers: 2);
        model.Source.Remove("model.layers.1.self_attn.k_proj.weight");
        var ex = Assert.Throws<Formats.Errors.MoeCompressException>(() => model.Engine().LoadLayer(1).Dispose());
        Assert.Contains("model.layers.1.self_attn.k_proj.weight", ex.Message);
        Assert.Equal(Formats.Errors.ErrorKind.InvalidCheckpoint, ex.Kind);
    }

    [Fact]
    public void MissingExpertTensorIsNamedInTheError()
    {
        using var model = TinyModel.Create("deepseek_v3", layers: 2);
        model.Source.Remove("model.layers.1.mlp.experts.2.up_proj.weight");
        var ex = Assert.Throws<Formats.Errors.MoeCompressException>(() => model.Engine().LoadLayer(1).Dispose());
        Assert.Contains("model.layers.1.mlp.experts.2.up_proj.weight", ex.Message);
        Assert.Contains("layer 1 expert 2 up_proj", ex.Message);
    }

    [Fact]
    public void WrongShapeIsNamedInTheError()
    {
        using var model = TinyModel.Create("olmoe", layers: 2);
        using (var scope = NewDisposeScope())
            model.Source.Set("model.layers.0.mlp.gate.weight", zeros(3, TinyModel.Hidden));
        var ex = Assert.Throws<Formats.Errors.MoeCompressException>(() => model.Engine().LoadLayer(0).Dispose());
        Assert.Contains("model.layers.0.mlp.gate.weight", ex.Message);
        Assert.Contains("[3, 8]", ex.Message);
    }

    [Fact]
    public void TokenOutsideTheVocabularyIsRejected()
    {
        using var model = TinyModel.Create("mixtral", layers: 1);
        using var resident = model.Engine().LoadResident();
        var ex = Assert.Throws<Formats.Errors.MoeCompressException>(() => resident.Forward(new[] { 1, TinyModel.Vocab }).Dispose());
        Assert.Contains($"token id {TinyModel.Vocab} at position 1", ex.Message);
    }

    [Fact]
    public void TiedEmbeddingsServeAsTheOutputProjection()
    {
        using var model = TinyModel.Create("olmoe", layers: 1, configure: c => c["tie_word_embeddings"] = true);
        model.Source.Remove("lm_head.weight");
        using var head = model.Engine().LoadHead();
        Assert.True(head.LmHead.eq(model.Source.Get("model.embed_tokens.weight")).all().item<bool>());
    }
}
