using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MoECompress.Compression.Training;

/// <summary>
/// A trainable Mixtral-architecture causal LM (TorchSharp autograd) whose math matches Hugging Face
/// MixtralForCausalLM: token embedding, decoder layers (RMSNorm → GQA attention with rotary embeddings →
/// RMSNorm → top-k sparse MoE with SiLU-gated experts), final RMSNorm and the LM head (tied to the embedding when
/// <see cref="ReferenceModelOptions.TieWordEmbeddings"/>). Parameters are fp32 master weights; matrix products may
/// run in bf16 (<see cref="ReferenceModelOptions.Bf16Matmuls"/>). <see cref="NamedHuggingFaceTensors"/> maps every
/// parameter to its HF tensor name.
/// </summary>
public sealed class MixtralTrainingModel : ReferenceTrainingModel
{
    public Parameter embed_tokens;
    public ModuleList<TrainingDecoderLayer> layers;
    public TrainingRmsNorm norm;
    public Parameter? lm_head;

    /// <summary>Builds the model with weights ~ N(0, initializer_range²) drawn from a generator seeded with <paramref name="seed"/>
    /// (output projections o_proj and w2 scaled by 1/√(2·layers)); norms start at one.</summary>
    public MixtralTrainingModel(ReferenceModelOptions options, long vocabularySize, long seed) : base(options, vocabularySize)
    {
        (embed_tokens, layers, norm, lm_head) = BuildModel(seed, (l, init, initOutput) => new TrainingDecoderLayer($"layer{l}", options, init, initOutput));
        RegisterComponents();
    }

    /// <summary>Forward pass over token ids [B, T] (int64).</summary>
    public override TrainingForwardResult Forward(Tensor inputIds) => Forward(inputIds, embed_tokens, norm, lm_head, (x, routers) =>
    {
        foreach (var layer in layers)
        {
            var result = layer.Forward(x);
            x = result.Output;
            routers.Add(result);
        }
        return x;
    });

    /// <summary>
    /// Every parameter under its Hugging Face MixtralForCausalLM name and shape (experts split out of the stacked
    /// tensors). The tensors are new views/copies owned by the caller's dispose scope.
    /// </summary>
    public override IEnumerable<(string Name, Tensor Tensor)> NamedHuggingFaceTensors()
    {
        yield return ("model.embed_tokens.weight", embed_tokens);
        for (int l = 0; l < layers.Count; l++)
        {
            var layer = layers[l];
            string p = $"model.layers.{l}.";
            yield return (p + "input_layernorm.weight", layer.input_layernorm.weight);
            yield return (p + "self_attn.q_proj.weight", layer.self_attn.q_proj);
            yield return (p + "self_attn.k_proj.weight", layer.self_attn.k_proj);
            yield return (p + "self_attn.v_proj.weight", layer.self_attn.v_proj);
            yield return (p + "self_attn.o_proj.weight", layer.self_attn.o_proj);
            yield return (p + "post_attention_layernorm.weight", layer.post_attention_layernorm.weight);
            var moe = layer.block_sparse_moe;
            yield return (p + "block_sparse_moe.gate.weight", moe.gate);
            for (int e = 0; e < Options.Experts; e++)
            {
                yield return (p + $"block_sparse_moe.experts.{e}.w1.weight", moe.w1[e]);
                yield return (p + $"block_sparse_moe.experts.{e}.w2.weight", moe.w2[e]);
                yield return (p + $"block_sparse_moe.experts.{e}.w3.weight", moe.w3[e]);
            }
        }
        yield return ("model.norm.weight", norm.weight);
        if (lm_head is not null) yield return ("lm_head.weight", lm_head);
    }

    public override System.Text.Json.Nodes.JsonObject HuggingFaceConfig(int bosId, int eosId) =>
        ReferenceCheckpointExporter.BuildMixtralConfig(Options, VocabularySize, bosId, eosId);

    /// <summary>Mean over layers of the Switch load-balancing loss (<see cref="LoadBalancingLoss.Compute"/>).</summary>
    public override Tensor BalanceLoss(TrainingForwardResult forward) =>
        torch.stack(forward.Routers.Select(r => LoadBalancingLoss.Compute(r.RouterProbabilities, r.SelectedExperts)).ToArray()).mean();

    public override double BalanceLossCoefficient => Options.AuxLossCoefficient;
}
