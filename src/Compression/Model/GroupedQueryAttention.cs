using static TorchSharp.torch;

namespace MoECompress.Compression.Model;

/// <summary>
/// Grouped-query attention (Mixtral, Qwen-MoE, OLMoE, DeepSeek-V1, GLM-4.5, GPT-OSS): q/k/v/o projections with optional biases,
/// optional q/k RMSNorm — per head (Qwen3: norm weight of size head_dim, applied to each head) or over the whole
/// projection (OLMoE: size heads·head_dim, applied before the head split) —, optional clamp (OLMoE clip_qkv),
/// rotate-half RoPE (on the first rotary dimensions of each head when they are fewer), key/value heads repeated to the
/// query heads (kv head j serves query heads j·r … j·r+r−1), optional per-head attention sinks (GPT-OSS), optional
/// output gate (Qwen3-Next: q_proj yields [query, gate] per head, and the merged heads are multiplied by sigmoid(gate)
/// before o_proj).
/// </summary>
public sealed class GroupedQueryAttention : AttentionBlock
{
    public GroupedQueryAttention(int numHeads, int numKeyValueHeads, int headDim,
        LinearWeights q, LinearWeights k, LinearWeights v, LinearWeights o,
        double scale, int? slidingWindow = null, RmsNorm? qNorm = null, RmsNorm? kNorm = null, double? clipQkv = null,
        Tensor? sinks = null, bool outputGate = false)
        : base(scale, slidingWindow)
    {
        var qRows = (long)numHeads * headDim * (outputGate ? 2 : 1);
        if (sinks is not null && (sinks.dim() != 1 || sinks.shape[0] != numHeads))
            throw new ArgumentException($"attention sinks must be [{numHeads}], found [{string.Join(",", sinks.shape)}]");
        if (numHeads % numKeyValueHeads != 0) throw new ArgumentException("heads must be a multiple of key/value heads");
        if (q.OutFeatures != qRows || k.OutFeatures != (long)numKeyValueHeads * headDim ||
            v.OutFeatures != (long)numKeyValueHeads * headDim || o.InFeatures != (long)numHeads * headDim)
            throw new ArgumentException("attention projection shapes disagree with the head counts");
        if (qNorm is not null && qNorm.Size != headDim && qNorm.Size != (long)numHeads * headDim)
            throw new ArgumentException($"q_norm size {qNorm.Size} is neither head_dim {headDim} nor heads·head_dim");
        if (kNorm is not null && kNorm.Size != headDim && kNorm.Size != (long)numKeyValueHeads * headDim)
            throw new ArgumentException($"k_norm size {kNorm.Size} is neither head_dim {headDim} nor kv_heads·head_dim");
        NumHeads = numHeads;
        NumKeyValueHeads = numKeyValueHeads;
        HeadDim = headDim;
        Q = q;
        K = k;
        V = v;
        O = o;
        QNorm = qNorm;
        KNorm = kNorm;
        ClipQkv = clipQkv;
        Sinks = sinks;
        OutputGate = outputGate;
    }

    public int NumHeads { get; }
    public int NumKeyValueHeads { get; }
    public int HeadDim { get; }
    public LinearWeights Q { get; }
    public LinearWeights K { get; }
    public LinearWeights V { get; }
    public LinearWeights O { get; }
    public RmsNorm? QNorm { get; }
    public RmsNorm? KNorm { get; }
    public double? ClipQkv { get; }
    /// <summary>GPT-OSS per-head sink logits [heads]: an extra softmax entry per query that receives no value; null for none.</summary>
    public Tensor? Sinks { get; }
    /// <summary>True when q_proj also yields the per-head output gate (Qwen3-Next gated attention).</summary>
    public bool OutputGate { get; }

    public override Tensor Forward(Tensor x, RotaryTables rope)
    {
        using var scope = NewDisposeScope();
        var b = x.shape[0];
        var l = x.shape[1];
        var q = Q.Forward(x);
        Tensor? gate = null;
        if (OutputGate)
        {
            var both = q.view(b, l, NumHeads, 2L * HeadDim);
            gate = both.narrow(-1, HeadDim, HeadDim).reshape(b, l, (long)NumHeads * HeadDim);
            q = both.narrow(-1, 0, HeadDim).reshape(b, l, (long)NumHeads * HeadDim);
        }
        var k = K.Forward(x);
        var v = V.Forward(x);
        if (QNorm is not null && QNorm.Size != HeadDim) q = QNorm.Forward(q);
        if (KNorm is not null && KNorm.Size != HeadDim) k = KNorm.Forward(k);
        if (ClipQkv is { } clip)
        {
            q = q.ClampTo(-clip, clip);
            k = k.ClampTo(-clip, clip);
            v = v.ClampTo(-clip, clip);
        }
        q = q.view(b, l, NumHeads, HeadDim);
        k = k.view(b, l, NumKeyValueHeads, HeadDim);
        v = v.view(b, l, NumKeyValueHeads, HeadDim);
        if (QNorm is not null && QNorm.Size == HeadDim) q = QNorm.Forward(q);
        if (KNorm is not null && KNorm.Size == HeadDim) k = KNorm.Forward(k);
        q = RotaryEmbedding.Apply(q.transpose(1, 2), rope, interleaved: false);
        k = RotaryEmbedding.Apply(k.transpose(1, 2), rope, interleaved: false);
        v = v.transpose(1, 2);
        var groups = NumHeads / NumKeyValueHeads;
        if (groups > 1)
        {
            k = k.repeat_interleave(groups, 1);
            v = v.repeat_interleave(groups, 1);
        }
        var attn = Sinks is null ? Attend(q, k, v, Scale, SlidingWindow) : AttendWithSinks(q, k, v, Scale, SlidingWindow, Sinks);
        var merged = attn.transpose(1, 2).reshape(b, l, (long)NumHeads * HeadDim);
        if (gate is not null) merged = merged * gate.sigmoid();
        return O.Forward(merged).MoveToOuterDisposeScope();
    }

    public override void Dispose()
    {
        Q.Dispose();
        K.Dispose();
        V.Dispose();
        O.Dispose();
        QNorm?.Dispose();
        KNorm?.Dispose();
        Sinks?.Dispose();
    }
}
