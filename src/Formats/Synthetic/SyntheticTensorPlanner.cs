using System.Text.Json.Nodes;
using MoECompress.Formats.Families;
using MoECompress.Formats.Safetensors;

namespace MoECompress.Formats.Synthetic;

/// <summary>
/// Lists the tensors of a (scaled) config.json the way the real checkpoints of its family name, shape and type them:
/// module order within a layer as the models declare them, weights in the config's dtype, F32 where real releases
/// keep F32 (DeepSeek-V3 e_score_correction_bias), U8 MXFP4 blocks/scales for GPT-OSS.
/// </summary>
public static class SyntheticTensorPlanner
{
    /// <summary>The tensors of <paramref name="config"/> for <paramref name="preset"/>, in writing order.</summary>
    public static IReadOnlyList<SyntheticTensor> Plan(SyntheticPreset preset, JsonObject config)
    {
        var family = FamilyRegistry.Get(preset.Family);
        var moe = family.ReadConfig(config, "config.json") with { FusedExperts = preset.FusedExperts || family.Name is "granitemoe" or "gpt-oss" };
        var section = config["text_config"] as JsonObject ?? config;
        var ctx = new PlanContext(preset, family, moe, config, section, WeightDType(config, section));
        ctx.Plan();
        return ctx.Tensors;
    }

    /// <summary>The dtype of the weights: "torch_dtype" / "dtype" of the language model config (BF16 when absent).</summary>
    public static SafetensorsDType WeightDType(JsonObject root, JsonObject section)
    {
        var name = (section["torch_dtype"] ?? section["dtype"] ?? root["torch_dtype"] ?? root["dtype"])?.GetValue<string>() ?? "bfloat16";
        return name switch
        {
            "float16" => SafetensorsDType.F16,
            "float32" => SafetensorsDType.F32,
            _ => SafetensorsDType.BF16,
        };
    }

    private sealed class PlanContext(SyntheticPreset preset, IMoEFamily family, MoEConfig moe, JsonObject root, JsonObject section, SafetensorsDType dt)
    {
        public readonly List<SyntheticTensor> Tensors = [];
        private readonly int _h = moe.HiddenSize;
        private readonly int _heads = section["num_attention_heads"]!.GetValue<int>();
        private readonly int _kvHeads = section["num_key_value_heads"]?.GetValue<int>() ?? section["num_attention_heads"]!.GetValue<int>();
        private int HeadDim => section["head_dim"]?.GetValue<int>() ?? _h / _heads;

        private void Add(string name, long[] shape, SyntheticInit init = SyntheticInit.Normal, SafetensorsDType? dtype = null) =>
            Tensors.Add(new SyntheticTensor(name, dtype ?? dt, shape, init));

        private void Norm(string name, long size, bool bias = false)
        {
            Add(name + ".weight", [size], SyntheticInit.NormScale);
            if (bias) Add(name + ".bias", [size]);
        }

        private void Linear(string name, long outDim, long inDim, bool bias = false)
        {
            // FP8 releases quantize the decoder layers' linear weights, never the router (mlp.gate).
            if (preset.Fp8Weights && name.Contains(".layers.", StringComparison.Ordinal) && !name.EndsWith(".mlp.gate", StringComparison.Ordinal))
            {
                Add(name + ".weight", [outDim, inDim], SyntheticInit.Fp8Codes, SafetensorsDType.F8_E4M3);
                Add(name + ".weight_scale_inv", [(outDim + 127) / 128, (inDim + 127) / 128], SyntheticInit.Fp8BlockScale, SafetensorsDType.F32);
            }
            else
                Add(name + ".weight", [outDim, inDim]);
            if (bias) Add(name + ".bias", [outDim]);
        }

        public void Plan()
        {
            switch (family.Name)
            {
                case "qwen3.5-moe": PlanQwen35(); break;
                default: PlanDecoder(); break;
            }
        }

        // ---- the Llama-style families ----

        private void PlanDecoder()
        {
            var p = moe.ModelPrefix;
            bool phi = family.Name == "phimoe";
            Add(p + "embed_tokens.weight", [moe.VocabSize, _h]);
            for (int l = 0; l < moe.NumLayers; l++) PlanLayer($"{p}layers.{l}.", l);
            if (family.Name is "deepseek-v3" or "deepseek-v2" or "glm4-moe")
                for (int k = 0; k < moe.NumMtpLayers && preset.WriteMtp; k++) PlanDeepSeekMtp(moe.NumLayers + k);
            Norm(p + "norm", _h, bias: phi);
            if (!moe.TieWordEmbeddings)
            {
                Add("lm_head.weight", [moe.VocabSize, _h]);
                if (phi && (section["lm_head_bias"]?.GetValue<bool>() ?? false)) Add("lm_head.bias", [moe.VocabSize]);
            }
        }

        private void PlanLayer(string lp, int layer)
        {
            bool phi = family.Name == "phimoe";
            PlanAttention(lp);
            PlanMlp(lp, layer);
            Norm(lp + "input_layernorm", _h, bias: phi);
            Norm(lp + "post_attention_layernorm", _h, bias: phi);
        }

        private void PlanAttention(string lp)
        {
            var a = lp + "self_attn.";
            if (family.Name is "deepseek-v2" or "deepseek-v3")
            {
                int nope = section["qk_nope_head_dim"]!.GetValue<int>(), rope = section["qk_rope_head_dim"]!.GetValue<int>();
                int v = section["v_head_dim"]!.GetValue<int>(), kvRank = section["kv_lora_rank"]!.GetValue<int>();
                int? qRank = section["q_lora_rank"]?.GetValue<int>();
                if (qRank is int qr)
                {
                    Linear(a + "q_a_proj", qr, _h);
                    Norm(a + "q_a_layernorm", qr);
                    Linear(a + "q_b_proj", (long)_heads * (nope + rope), qr);
                }
                else
                {
                    Linear(a + "q_proj", (long)_heads * (nope + rope), _h);
                }
                Linear(a + "kv_a_proj_with_mqa", kvRank + rope, _h);
                Norm(a + "kv_a_layernorm", kvRank);
                Linear(a + "kv_b_proj", (long)_heads * (nope + v), kvRank);
                Linear(a + "o_proj", _h, (long)_heads * v);
                return;
            }
            bool glm = family.Name == "glm4-moe";
            bool attentionBias = section["attention_bias"]?.GetValue<bool>() ?? false;
            // GLM-4.5: attention_bias puts biases on q/k/v only (o_proj never has one).
            bool qkvBias = family.Name == "qwen2-moe" || (glm && attentionBias);
            bool allBias = attentionBias && !glm;
            int hd = HeadDim;
            Linear(a + "q_proj", (long)_heads * hd, _h, qkvBias || allBias);
            Linear(a + "k_proj", (long)_kvHeads * hd, _h, qkvBias || allBias);
            Linear(a + "v_proj", (long)_kvHeads * hd, _h, qkvBias || allBias);
            Linear(a + "o_proj", _h, (long)_heads * hd, allBias);
            if (family.Name == "qwen3-moe" || (glm && (section["use_qk_norm"]?.GetValue<bool>() ?? false)))
            {
                Norm(a + "q_norm", hd);
                Norm(a + "k_norm", hd);
            }
            if (family.Name == "olmoe") { Norm(a + "q_norm", (long)_heads * hd); Norm(a + "k_norm", (long)_kvHeads * hd); }
            if (family.Name == "gpt-oss") Add(a + "sinks", [_heads]);
        }

        private void PlanMlp(string lp, int layer)
        {
            long e = moe.NumExperts, i = moe.ExpertIntermediateSize;
            if (!moe.HasRoutedExperts(layer))
            {
                long d = moe.DenseIntermediateSize;
                Linear(lp + "mlp.gate_proj", d, _h);
                Linear(lp + "mlp.up_proj", d, _h);
                Linear(lp + "mlp.down_proj", _h, d);
                return;
            }
            switch (family.Name)
            {
                case "mixtral" or "phimoe":
                    Linear(lp + "block_sparse_moe.gate", e, _h);
                    for (int x = 0; x < e; x++)
                    {
                        var ep = $"{lp}block_sparse_moe.experts.{x}.";
                        Linear(ep + "w1", i, _h);
                        Linear(ep + "w2", _h, i);
                        Linear(ep + "w3", i, _h);
                    }
                    break;
                case "granitemoe":
                    Add(lp + "block_sparse_moe.input_linear.weight", [e, 2 * i, _h]);
                    Add(lp + "block_sparse_moe.output_linear.weight", [e, _h, i]);
                    Add(lp + "block_sparse_moe.router.layer.weight", [e, _h]);
                    if (moe.NumSharedExperts > 0)
                    {
                        // GraniteMoeShared: shared_mlp.input_linear [2S, H] (gate rows, then up), output_linear [H, S].
                        long s = moe.SharedExpertIntermediateSize;
                        Add(lp + "shared_mlp.input_linear.weight", [2 * s, _h]);
                        Add(lp + "shared_mlp.output_linear.weight", [_h, s]);
                    }
                    break;
                case "gpt-oss":
                    Linear(lp + "mlp.router", e, _h, bias: true);
                    var xp = lp + "mlp.experts.";
                    Add(xp + "gate_up_proj_blocks", [e, 2 * i, _h / 32, 16], SyntheticInit.RandomBytes, SafetensorsDType.U8);
                    Add(xp + "gate_up_proj_scales", [e, 2 * i, _h / 32], SyntheticInit.Mxfp4Scales, SafetensorsDType.U8);
                    Add(xp + "gate_up_proj_bias", [e, 2 * i]);
                    Add(xp + "down_proj_blocks", [e, _h, i / 32, 16], SyntheticInit.RandomBytes, SafetensorsDType.U8);
                    Add(xp + "down_proj_scales", [e, _h, i / 32], SyntheticInit.Mxfp4Scales, SafetensorsDType.U8);
                    Add(xp + "down_proj_bias", [e, _h]);
                    break;
                default: // Qwen, OLMoE, DeepSeek: mlp.gate + mlp.experts (+ shared)
                    Linear(lp + "mlp.gate", e, _h);
                    if (moe.HasCorrectionBias) Add(lp + "mlp.gate.e_score_correction_bias", [e], dtype: SafetensorsDType.F32);
                    PlanStandardExperts(lp + "mlp.", e, i);
                    if (moe.NumSharedExperts > 0)
                    {
                        long s = moe.SharedExpertIntermediateSize;
                        var sp = lp + (family is DeepSeekFamilyBase ? "mlp.shared_experts." : "mlp.shared_expert.");
                        Linear(sp + "gate_proj", s, _h);
                        Linear(sp + "up_proj", s, _h);
                        Linear(sp + "down_proj", _h, s);
                        if (moe.HasSharedExpertGate) Linear(lp + "mlp.shared_expert_gate", 1, _h);
                    }
                    break;
            }
        }

        private void PlanStandardExperts(string mp, long e, long i)
        {
            if (moe.FusedExperts)
            {
                Add(mp + "experts.gate_up_proj", [e, 2 * i, _h]);
                Add(mp + "experts.down_proj", [e, _h, i]);
                return;
            }
            for (int x = 0; x < e; x++)
            {
                var ep = $"{mp}experts.{x}.";
                Linear(ep + "gate_proj", i, _h);
                Linear(ep + "up_proj", i, _h);
                Linear(ep + "down_proj", _h, i);
            }
        }

        /// <summary>DeepSeek MTP layer: a decoder layer plus embed_tokens, enorm, hnorm, eh_proj and shared_head.</summary>
        private void PlanDeepSeekMtp(int layer)
        {
            var lp = $"{moe.ModelPrefix}layers.{layer}.";
            Add(lp + "embed_tokens.weight", [moe.VocabSize, _h]);
            Norm(lp + "enorm", _h);
            Norm(lp + "hnorm", _h);
            Linear(lp + "eh_proj", _h, 2L * _h);
            PlanLayer(lp, layer);
            Norm(lp + "shared_head.norm", _h);
            Add(lp + "shared_head.head.weight", [moe.VocabSize, _h]);
        }

        // ---- Qwen3.5 / 3.6 ----

        private void PlanQwen35()
        {
            var p = moe.ModelPrefix;
            Add(p + "embed_tokens.weight", [moe.VocabSize, _h]);
            var types = section["layer_types"] as JsonArray;
            // Without layer_types (Qwen3-Next) every full_attention_interval-th layer is full attention, as transformers derives it.
            int interval = section["full_attention_interval"]?.GetValue<int>() ?? 4;
            for (int l = 0; l < moe.NumLayers; l++)
            {
                var lp = $"{p}layers.{l}.";
                Norm(lp + "input_layernorm", _h);
                bool linear = types is not null ? types[l]?.GetValue<string>() == "linear_attention" : (l + 1) % interval != 0;
                if (linear) PlanLinearAttention(lp);
                else PlanGatedAttention(lp);
                PlanQwen35Mlp(lp, l);
                Norm(lp + "post_attention_layernorm", _h);
            }
            Norm(p + "norm", _h);
            if (root["vision_config"] is JsonObject vision) PlanVision(vision);
            if (preset.WriteMtp && moe.NumMtpLayers > 0)
            {
                Norm("mtp.pre_fc_norm_embedding", _h);
                Linear("mtp.fc", _h, 2L * _h);
                for (int k = 0; k < moe.NumMtpLayers; k++)
                {
                    var lp = $"mtp.layers.{k}.";
                    Norm(lp + "input_layernorm", _h);
                    PlanQwen35Mlp(lp, moe.NumLayers + k);
                    Norm(lp + "post_attention_layernorm", _h);
                    PlanGatedAttention(lp);
                }
                Norm("mtp.norm", _h);
                Norm("mtp.pre_fc_norm_hidden", _h);
            }
            if (!moe.TieWordEmbeddings) Add("lm_head.weight", [moe.VocabSize, _h]);
        }

        private void PlanLinearAttention(string lp)
        {
            var a = lp + "linear_attn.";
            int nk = section["linear_num_key_heads"]!.GetValue<int>(), nv = section["linear_num_value_heads"]!.GetValue<int>();
            int dk = section["linear_key_head_dim"]!.GetValue<int>(), dv = section["linear_value_head_dim"]!.GetValue<int>();
            int kernel = section["linear_conv_kernel_dim"]?.GetValue<int>() ?? 4;
            long conv = 2L * nk * dk + (long)nv * dv;
            Add(a + "A_log", [nv]);
            Add(a + "conv1d.weight", [conv, 1, kernel]);
            Add(a + "dt_bias", [nv]);
            if (section["model_type"]?.GetValue<string>() == "qwen3_next")
            {
                // Qwen3-Next fuses the projections, rows grouped per key head: [q, k, v, z] and [b, a].
                Linear(a + "in_proj_ba", 2L * nv, _h);
                Linear(a + "in_proj_qkvz", conv + (long)nv * dv, _h);
            }
            else
            {
                Linear(a + "in_proj_a", nv, _h);
                Linear(a + "in_proj_b", nv, _h);
                Linear(a + "in_proj_qkv", conv, _h);
                Linear(a + "in_proj_z", (long)nv * dv, _h);
            }
            Norm(a + "norm", dv);
            Linear(a + "out_proj", _h, (long)nv * dv);
        }

        /// <summary>
        /// Full attention with output gate: q_proj holds the query and the gate (2 × heads × head_dim rows); transformers
        /// always builds it so, and Qwen3-Next's config has no attn_output_gate key.
        /// </summary>
        private void PlanGatedAttention(string lp)
        {
            var a = lp + "self_attn.";
            int hd = HeadDim;
            bool gate = section["attn_output_gate"]?.GetValue<bool>() ?? true;
            Norm(a + "k_norm", hd);
            Linear(a + "k_proj", (long)_kvHeads * hd, _h);
            Linear(a + "o_proj", _h, (long)_heads * hd);
            Norm(a + "q_norm", hd);
            Linear(a + "q_proj", (long)_heads * hd * (gate ? 2 : 1), _h);
            Linear(a + "v_proj", (long)_kvHeads * hd, _h);
        }

        private void PlanQwen35Mlp(string lp, int layer)
        {
            long e = moe.NumExperts, i = moe.ExpertIntermediateSize, s = moe.SharedExpertIntermediateSize;
            if (!moe.HasRoutedExperts(layer))
            {
                long d = moe.DenseIntermediateSize;
                Linear(lp + "mlp.gate_proj", d, _h);
                Linear(lp + "mlp.up_proj", d, _h);
                Linear(lp + "mlp.down_proj", _h, d);
                return;
            }
            if (s > 0)
            {
                Linear(lp + "mlp.shared_expert.down_proj", _h, s);
                Linear(lp + "mlp.shared_expert.gate_proj", s, _h);
                Linear(lp + "mlp.shared_expert.up_proj", s, _h);
                Linear(lp + "mlp.shared_expert_gate", 1, _h);
            }
            PlanStandardExperts(lp + "mlp.", e, i);
            Linear(lp + "mlp.gate", e, _h);
        }

        private void PlanVision(JsonObject v)
        {
            const string vp = "model.visual.";
            int vh = v["hidden_size"]!.GetValue<int>(), vi = v["intermediate_size"]!.GetValue<int>();
            int depth = v["depth"]!.GetValue<int>(), patch = v["patch_size"]!.GetValue<int>();
            int inCh = v["in_channels"]?.GetValue<int>() ?? 3, temporal = v["temporal_patch_size"]?.GetValue<int>() ?? 2;
            int merge = v["spatial_merge_size"]?.GetValue<int>() ?? 2, positions = v["num_position_embeddings"]!.GetValue<int>();
            int outHidden = v["out_hidden_size"]?.GetValue<int>() ?? _h;
            Add(vp + "patch_embed.proj.bias", [vh]);
            Add(vp + "patch_embed.proj.weight", [vh, inCh, temporal, patch, patch]);
            Add(vp + "pos_embed.weight", [positions, vh]);
            for (int b = 0; b < depth; b++)
            {
                var bp = $"{vp}blocks.{b}.";
                Linear(bp + "attn.proj", vh, vh, bias: true);
                Linear(bp + "attn.qkv", 3L * vh, vh, bias: true);
                Linear(bp + "mlp.linear_fc1", vi, vh, bias: true);
                Linear(bp + "mlp.linear_fc2", vh, vi, bias: true);
                Norm(bp + "norm1", vh, bias: true);
                Norm(bp + "norm2", vh, bias: true);
            }
            long merged = (long)vh * merge * merge;
            Linear(vp + "merger.linear_fc1", merged, merged, bias: true);
            Linear(vp + "merger.linear_fc2", outHidden, merged, bias: true);
            Norm(vp + "merger.norm", vh, bias: true);
        }
    }
}
