using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MoECompress.Compression.Training;

/// <summary>
/// DeepSeek-V3 multi-head latent attention as Hugging Face DeepseekV3Attention with q_lora_rank null: per head
/// q = q_proj(x) = [q_nope (qk_nope_head_dim), q_rope (qk_rope_head_dim)];
/// kv_a_proj_with_mqa(x) = [c (kv_lora_rank), k_rope (qk_rope_head_dim, one for all heads)];
/// kv_b_proj(RMSNorm_1e-6(c)) = per head [k_nope, v (v_head_dim)]. Rotary embeddings (rope_interleave: the rope part is
/// de-interleaved [x0, x2, …, x1, x3, …] and then rotated in the rotate_half form) touch only q_rope and k_rope; the
/// scores are softmax(q·kᵀ/√(qk_nope + qk_rope)) with a causal mask; o_proj maps heads·v_head_dim back.
/// </summary>
public sealed class TrainingLatentAttention : nn.Module<Tensor, Tensor>
{
    /// <summary>Epsilon of kv_a_layernorm: DeepseekV3RMSNorm's default, not rms_norm_eps.</summary>
    public const double LatentNormEps = 1e-6;

    private readonly int heads, kvLoraRank, nope, rope, vDim;
    private readonly double ropeTheta;
    private readonly bool bf16;

    public Parameter q_proj, kv_a_proj_with_mqa;
    public TrainingRmsNorm kv_a_layernorm;
    public Parameter kv_b_proj, o_proj;

    public TrainingLatentAttention(string name, ReferenceModelOptions o, Func<long[], Tensor> init, Func<long[], Tensor> initOutput)
        : base(name)
    {
        heads = o.AttentionHeads;
        kvLoraRank = o.KvLoraRank;
        nope = o.QkNopeHeadDim;
        rope = o.QkRopeHeadDim;
        vDim = o.VHeadDim;
        ropeTheta = o.RopeTheta;
        bf16 = o.Bf16Matmuls;
        q_proj = new Parameter(init([heads * (nope + rope), o.HiddenSize]));
        kv_a_proj_with_mqa = new Parameter(init([kvLoraRank + rope, o.HiddenSize]));
        kv_a_layernorm = new TrainingRmsNorm("kv_a_layernorm", kvLoraRank, LatentNormEps);
        kv_b_proj = new Parameter(init([heads * (nope + vDim), kvLoraRank]));
        o_proj = new Parameter(initOutput([o.HiddenSize, heads * vDim]));
        RegisterComponents();
    }

    /// <summary>Rotary embedding of x [..., T, d] in DeepSeek's interleaved layout with tables [T, d].</summary>
    public static Tensor RotateInterleaved(Tensor x, Tensor cos, Tensor sin)
    {
        using var scope = NewDisposeScope();
        var shape = x.shape;
        long d = shape[^1];
        var pairs = shape[..^1].Concat([d / 2, 2L]).ToArray();
        var deinterleaved = x.reshape(pairs).transpose(-1, -2).reshape(shape);
        return (deinterleaved * cos).Plus(TrainingAttention.RotateHalf(deinterleaved) * sin).MoveToOuterDisposeScope();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0], t = x.shape[1];
        var q = TrainingLinear.Apply(x, q_proj, bf16).view(b, t, heads, nope + rope).transpose(1, 2);
        var compressed = TrainingLinear.Apply(x, kv_a_proj_with_mqa, bf16);
        var latent = compressed.narrow(-1, 0, kvLoraRank);
        var kRope = compressed.narrow(-1, kvLoraRank, rope).reshape(b, 1, t, rope);
        var kv = TrainingLinear.Apply(kv_a_layernorm.forward(latent), kv_b_proj, bf16).view(b, t, heads, nope + vDim).transpose(1, 2);

        var (cos, sin) = TrainingAttention.RotaryTables(t, rope, ropeTheta);
        var qRope = RotateInterleaved(q.narrow(-1, nope, rope), cos, sin);
        kRope = RotateInterleaved(kRope, cos, sin).expand(b, heads, t, rope);
        var query = torch.cat([q.narrow(-1, 0, nope), qRope], -1);
        var key = torch.cat([kv.narrow(-1, 0, nope), kRope], -1);
        var value = kv.narrow(-1, nope, vDim).contiguous();
        // The default scale of scaled_dot_product_attention is 1/√(query width) = 1/√(qk_nope + qk_rope), as DeepSeek's.
        var attended = nn.functional.scaled_dot_product_attention(query, key, value, is_casual: true);
        var merged = attended.transpose(1, 2).reshape(b, t, heads * vDim);
        return TrainingLinear.Apply(merged, o_proj, bf16).MoveToOuterDisposeScope();
    }

    /// <summary>The attention's tensors under their Hugging Face names below <paramref name="prefix"/> ("model.layers.N.self_attn.").</summary>
    public IEnumerable<(string Name, Tensor Tensor)> NamedHuggingFaceTensors(string prefix) =>
    [
        (prefix + "q_proj.weight", q_proj), (prefix + "kv_a_proj_with_mqa.weight", kv_a_proj_with_mqa),
        (prefix + "kv_a_layernorm.weight", kv_a_layernorm.weight), (prefix + "kv_b_proj.weight", kv_b_proj),
        (prefix + "o_proj.weight", o_proj),
    ];
}
