using System.Text.Json.Nodes;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MoECompress.Compression.Training;

/// <summary>
/// A trainable DeepSeek-V3-architecture causal LM whose math matches Hugging Face DeepseekV3ForCausalLM with
/// q_lora_rank null, n_group = topk_group = 1 and no rope scaling: token embedding, decoder layers (RMSNorm → multi-head
/// latent attention → RMSNorm → a dense gated MLP in the first first_k_dense_replace layers, then routed + shared
/// experts with sigmoid routing), final RMSNorm and the LM head (tied to the embedding when
/// <see cref="ReferenceModelOptions.TieWordEmbeddings"/>). Load balancing as DeepSeek-V3 does it: the
/// e_score_correction_bias update after each optimiser step (<see cref="ReferenceModelOptions.BiasUpdateRate"/>) and the
/// sequence-wise balance loss (<see cref="ReferenceModelOptions.SequenceAuxLossCoefficient"/>).
/// </summary>
public sealed class DeepseekV3TrainingModel : ReferenceTrainingModel
{
    public Parameter embed_tokens;
    public ModuleList<TrainingDeepseekDecoderLayer> layers;
    public TrainingRmsNorm norm;
    public Parameter? lm_head;

    /// <summary>Builds the model with weights ~ N(0, initializer_range²) from a generator seeded with <paramref name="seed"/>
    /// (o_proj and down projections scaled by 1/√(2·layers)); norms start at one, correction biases at zero.</summary>
    public DeepseekV3TrainingModel(ReferenceModelOptions options, long vocabularySize, long seed) : base(options, vocabularySize)
    {
        (embed_tokens, layers, norm, lm_head) = BuildModel(seed, (l, init, initOutput) => new TrainingDeepseekDecoderLayer($"layer{l}", l, options, init, initOutput));
        RegisterComponents();
    }

    public override TrainingForwardResult Forward(Tensor inputIds) => Forward(inputIds, embed_tokens, norm, lm_head, (x, routers) =>
    {
        foreach (var layer in layers)
        {
            var (output, router) = layer.Forward(x);
            x = output;
            if (router is not null) routers.Add(router);
        }
        return x;
    });

    /// <summary>The MoE blocks, in layer order (the order of <see cref="TrainingForwardResult.Routers"/>).</summary>
    public IEnumerable<TrainingDeepseekMoeBlock> MoEBlocks() => layers.Select(l => l.moe).OfType<TrainingDeepseekMoeBlock>();

    /// <summary>Mean over MoE layers of the sequence-wise balance loss (<see cref="LoadBalancingLoss.SequenceWise"/>).</summary>
    public override Tensor BalanceLoss(TrainingForwardResult forward)
    {
        long sequences = forward.Logits.shape[0];
        return torch.stack(forward.Routers.Select(r => LoadBalancingLoss.SequenceWise(r.RouterProbabilities, r.SelectedExperts, sequences)).ToArray()).mean();
    }

    public override double BalanceLossCoefficient => Options.SequenceAuxLossCoefficient;

    /// <summary>The auxiliary-loss-free bias update of every MoE layer from this step's selections.</summary>
    public override void AfterOptimizerStep(TrainingForwardResult forward)
    {
        if (Options.BiasUpdateRate == 0) return;
        foreach (var (block, router) in MoEBlocks().Zip(forward.Routers))
            block.UpdateCorrectionBias(router.SelectedExperts, Options.BiasUpdateRate);
    }

    public override IEnumerable<(string Name, Tensor Tensor)> NamedHuggingFaceTensors()
    {
        yield return ("model.embed_tokens.weight", embed_tokens);
        for (int l = 0; l < layers.Count; l++)
            foreach (var nt in layers[l].NamedHuggingFaceTensors($"model.layers.{l}.")) yield return nt;
        yield return ("model.norm.weight", norm.weight);
        if (lm_head is not null) yield return ("lm_head.weight", lm_head);
    }

    public override JsonObject HuggingFaceConfig(int bosId, int eosId) => BuildConfig(Options, VocabularySize, bosId, eosId);

    /// <summary>
    /// config.json of the model: every key of transformers' DeepseekV3Config, plus those of DeepSeek's own
    /// configuration_deepseek.py that other loaders read (topk_method noaux_tc, scoring_func sigmoid, moe_layer_freq,
    /// num_nextn_predict_layers 0, aux_loss_alpha = the sequence-wise loss coefficient, seq_aux).
    /// </summary>
    public static JsonObject BuildConfig(ReferenceModelOptions o, long vocabularySize, int bosId, int eosId) => new()
    {
        ["architectures"] = new JsonArray("DeepseekV3ForCausalLM"),
        ["attention_bias"] = false,
        ["attention_dropout"] = 0.0,
        ["aux_loss_alpha"] = o.SequenceAuxLossCoefficient,
        ["bos_token_id"] = bosId,
        ["eos_token_id"] = eosId,
        ["ep_size"] = 1,
        ["first_k_dense_replace"] = o.FirstDenseLayers,
        ["hidden_act"] = "silu",
        ["hidden_size"] = o.HiddenSize,
        ["initializer_range"] = o.InitializerRange,
        ["intermediate_size"] = o.DenseIntermediateSize,
        ["kv_lora_rank"] = o.KvLoraRank,
        ["max_position_embeddings"] = o.SequenceLength,
        ["model_type"] = "deepseek_v3",
        ["moe_intermediate_size"] = o.IntermediateSize,
        ["moe_layer_freq"] = 1,
        ["n_group"] = 1,
        ["n_routed_experts"] = o.Experts,
        ["n_shared_experts"] = o.SharedExperts,
        ["norm_topk_prob"] = true,
        ["num_attention_heads"] = o.AttentionHeads,
        ["num_experts_per_tok"] = o.TopK,
        ["num_hidden_layers"] = o.Layers,
        ["num_key_value_heads"] = o.AttentionHeads,
        ["num_nextn_predict_layers"] = 0,
        ["pretraining_tp"] = 1,
        ["q_lora_rank"] = null,
        ["qk_nope_head_dim"] = o.QkNopeHeadDim,
        ["qk_rope_head_dim"] = o.QkRopeHeadDim,
        ["rms_norm_eps"] = o.RmsNormEps,
        ["rope_interleave"] = true,
        ["rope_scaling"] = null,
        ["rope_theta"] = o.RopeTheta,
        ["routed_scaling_factor"] = o.RoutedScalingFactor,
        ["scoring_func"] = "sigmoid",
        ["seq_aux"] = true,
        ["tie_word_embeddings"] = o.TieWordEmbeddings,
        ["topk_group"] = 1,
        ["topk_method"] = "noaux_tc",
        ["torch_dtype"] = "bfloat16",
        ["transformers_version"] = "4.57.0",
        ["use_cache"] = true,
        ["v_head_dim"] = o.VHeadDim,
        ["vocab_size"] = vocabularySize,
    };
}
