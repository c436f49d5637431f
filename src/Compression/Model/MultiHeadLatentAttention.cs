using static TorchSharp.torch;

namespace MoECompress.Compression.Model;

/// <summary>
/// DeepSeek-V2/V3 multi-head latent attention. q = q_proj(x), or q_b_proj(RMSNorm(q_a_proj(x))) with a LoRA rank;
/// kv_a_proj_with_mqa(x) = [c (kv_lora_rank), k_rope (qk_rope_head_dim, shared by all heads)];
/// kv_b_proj(RMSNorm(c)) = per head [k_nope, v]. RoPE (interleaved layout) rotates only q_rope and k_rope; the softmax
/// scale is 1/sqrt(qk_nope + qk_rope) times mscale² under DeepSeek YaRN. Latent norms use eps 1e-6 as the reference.
/// </summary>
public sealed class MultiHeadLatentAttention : AttentionBlock
{
    public MultiHeadLatentAttention(MlaSpec spec, int numHeads, double scale, bool ropeInterleaved,
        LinearWeights? qProj, LinearWeights? qA, RmsNorm? qANorm, LinearWeights? qB,
        LinearWeights kvA, RmsNorm kvANorm, LinearWeights kvB, LinearWeights o)
        : base(scale, null)
    {
        if (qProj is null && (qA is null || qANorm is null || qB is null))
            throw new ArgumentException("MLA needs q_proj, or q_a_proj + q_a_layernorm + q_b_proj");
        var qOut = qProj?.OutFeatures ?? qB!.OutFeatures;
        if (qOut != (long)numHeads * spec.QkHeadDim) throw new ArgumentException("MLA query projection shape disagrees with heads·qk_head_dim");
        if (kvA.OutFeatures != spec.KvLoraRank + spec.QkRopeHeadDim) throw new ArgumentException("kv_a_proj_with_mqa shape disagrees with kv_lora_rank + qk_rope_head_dim");
        if (kvB.OutFeatures != (long)numHeads * (spec.QkNopeHeadDim + spec.VHeadDim) || kvB.InFeatures != spec.KvLoraRank)
            throw new ArgumentException("kv_b_proj shape disagrees with heads·(qk_nope_head_dim + v_head_dim)");
        if (o.InFeatures != (long)numHeads * spec.VHeadDim) throw new ArgumentException("o_proj shape disagrees with heads·v_head_dim");
        Spec = spec;
        NumHeads = numHeads;
        RopeInterleaved = ropeInterleaved;
        QProj = qProj;
        QA = qA;
        QANorm = qANorm;
        QB = qB;
        KvA = kvA;
        KvANorm = kvANorm;
        KvB = kvB;
        O = o;
    }

    public MlaSpec Spec { get; }
    public int NumHeads { get; }
    public bool RopeInterleaved { get; }
    public LinearWeights? QProj { get; }
    public LinearWeights? QA { get; }
    public RmsNorm? QANorm { get; }
    public LinearWeights? QB { get; }
    public LinearWeights KvA { get; }
    public RmsNorm KvANorm { get; }
    public LinearWeights KvB { get; }
    public LinearWeights O { get; }

    public override Tensor Forward(Tensor x, RotaryTables rope)
    {
        using var scope = NewDisposeScope();
        var b = x.shape[0];
        var l = x.shape[1];
        var nope = Spec.QkNopeHeadDim;
        var ropeDim = Spec.QkRopeHeadDim;
        var q = QProj is not null ? QProj.Forward(x) : QB!.Forward(QANorm!.Forward(QA!.Forward(x)));
        q = q.view(b, l, NumHeads, Spec.QkHeadDim).transpose(1, 2);
        var qNope = q.narrow(-1, 0, nope);
        var qRot = q.narrow(-1, nope, ropeDim);

        var compressed = KvA.Forward(x);
        var latent = compressed.narrow(-1, 0, Spec.KvLoraRank);
        var kRot = compressed.narrow(-1, Spec.KvLoraRank, ropeDim);
        var kv = KvB.Forward(KvANorm.Forward(latent)).view(b, l, NumHeads, nope + Spec.VHeadDim).transpose(1, 2);
        var kNope = kv.narrow(-1, 0, nope);
        var value = kv.narrow(-1, nope, Spec.VHeadDim);

        kRot = kRot.reshape(b, 1, l, ropeDim);
        qRot = RotaryEmbedding.Apply(qRot, rope, RopeInterleaved);
        kRot = RotaryEmbedding.Apply(kRot, rope, RopeInterleaved).expand(b, NumHeads, l, ropeDim);
        var query = cat(new[] { qNope, qRot }, -1);
        var key = cat(new[] { kNope, kRot }, -1);
        var attn = Attend(query, key, value.contiguous(), Scale);
        var merged = attn.transpose(1, 2).reshape(b, l, (long)NumHeads * Spec.VHeadDim);
        return O.Forward(merged).MoveToOuterDisposeScope();
    }

    public override void Dispose()
    {
        QProj?.Dispose();
        QA?.Dispose();
        QANorm?.Dispose();
        QB?.Dispose();
        KvA.Dispose();
        KvANorm.Dispose();
        KvB.Dispose();
        O.Dispose();
    }
}
