using static TorchSharp.torch;

namespace MoECompress.Compression.Model;

/// <summary>
/// Gated DeltaNet linear attention of Qwen3-Next / Qwen3.5 (<c>linear_attn.*</c>), run as the plain recurrence (exact;
/// one step per position, so calibration-speed, not serving-speed):
/// <list type="number">
/// <item>q, k, v = split(SiLU(causal depthwise conv over the kernel (in_proj_qkv · x))); z = in_proj_z · x;
/// b = in_proj_b · x; a = in_proj_a · x.</item>
/// <item>β = sigmoid(b); g = −exp(A_log) · softplus(a + dt_bias) per value head; q and k are L2-normalised per head
/// (x · rsqrt(Σx² + 1e-6)), repeated to the value heads, q scaled by 1/√d_k.</item>
/// <item>Per value head, state S [d_k, d_v] from zero: S ← e^g · S; S ← S + k ⊗ β(v − Sᵀk); o = Sᵀq.</item>
/// <item>out_proj(RMSNorm(o) · norm.weight · SiLU(z)), the norm per value head.</item>
/// </list>
/// Qwen3-Next stores the projections fused and grouped by key head (<c>in_proj_qkvz</c>, <c>in_proj_ba</c>); the
/// loader reorders those rows into this split layout (<see cref="FromGroupedProjections"/>).
/// </summary>
public sealed class GatedDeltaNet : AttentionBlock
{
    /// <summary>transformers' l2norm epsilon inside the delta-rule kernels.</summary>
    public const double L2NormEps = 1e-6;

    public GatedDeltaNet(LinearAttentionSpec spec, LinearWeights qkv, LinearWeights z, LinearWeights b, LinearWeights a,
        Tensor convWeight, Tensor aLog, Tensor dtBias, Tensor normWeight, double normEps, LinearWeights outProj)
        : base(1.0 / Math.Sqrt(spec.KeyHeadDim), null)
    {
        if (qkv.OutFeatures != spec.ConvDim || z.OutFeatures != spec.ValueDim || b.OutFeatures != spec.NumValueHeads ||
            a.OutFeatures != spec.NumValueHeads || outProj.InFeatures != spec.ValueDim)
            throw new ArgumentException("Gated DeltaNet projection shapes disagree with the head counts");
        if (convWeight.dim() != 2 || convWeight.shape[0] != spec.ConvDim || convWeight.shape[1] != spec.ConvKernel)
            throw new ArgumentException($"conv1d weight must be [{spec.ConvDim}, {spec.ConvKernel}]");
        if (aLog.shape is not [var na] || na != spec.NumValueHeads || dtBias.shape is not [var nd] || nd != spec.NumValueHeads)
            throw new ArgumentException($"A_log and dt_bias must be [{spec.NumValueHeads}]");
        if (normWeight.shape is not [var nw] || nw != spec.ValueHeadDim)
            throw new ArgumentException($"norm weight must be [{spec.ValueHeadDim}]");
        Spec = spec;
        Qkv = qkv;
        Z = z;
        B = b;
        A = a;
        ConvWeight = convWeight;
        ALog = aLog;
        DtBias = dtBias;
        NormWeight = normWeight;
        NormEps = normEps;
        OutProj = outProj;
    }

    public LinearAttentionSpec Spec { get; }
    /// <summary>in_proj_qkv: [2·key dim + value dim, H], rows q, k, v.</summary>
    public LinearWeights Qkv { get; }
    /// <summary>in_proj_z: the output gate [value dim, H].</summary>
    public LinearWeights Z { get; }
    /// <summary>in_proj_b: β logits [value heads, H].</summary>
    public LinearWeights B { get; }
    /// <summary>in_proj_a: decay input [value heads, H].</summary>
    public LinearWeights A { get; }
    /// <summary>Depthwise causal conv1d taps [conv dim, kernel]; the last tap multiplies the current position.</summary>
    public Tensor ConvWeight { get; }
    public Tensor ALog { get; }
    public Tensor DtBias { get; }
    /// <summary>Weight of the gated RMSNorm over each value head [value head dim].</summary>
    public Tensor NormWeight { get; }
    public double NormEps { get; }
    public LinearWeights OutProj { get; }

    /// <summary>
    /// Splits Qwen3-Next's fused projections into the q/k/v, z, b and a rows. in_proj_qkvz rows are grouped per key
    /// head as [q (d_k), k (d_k), v (r·d_v), z (r·d_v)], in_proj_ba per key head as [b (r), a (r)] (r value heads per
    /// key head); value head j·r+i belongs to key head j. Returns new [out, in] matrices (the inputs are not disposed).
    /// </summary>
    public static (Tensor Qkv, Tensor Z, Tensor B, Tensor A) FromGroupedProjections(LinearAttentionSpec spec, Tensor qkvz, Tensor ba)
    {
        using var scope = NewDisposeScope();
        long nk = spec.NumKeyHeads, dk = spec.KeyHeadDim, rv = (long)spec.HeadRatio * spec.ValueHeadDim, r = spec.HeadRatio;
        var h = qkvz.shape[1];
        var grouped = qkvz.view(nk, 2 * dk + 2 * rv, h);
        var q = grouped.narrow(1, 0, dk).reshape(nk * dk, h);
        var k = grouped.narrow(1, dk, dk).reshape(nk * dk, h);
        var v = grouped.narrow(1, 2 * dk, rv).reshape(nk * rv, h);
        var z = grouped.narrow(1, 2 * dk + rv, rv).reshape(nk * rv, h);
        var groupedBa = ba.view(nk, 2 * r, h);
        var b = groupedBa.narrow(1, 0, r).reshape(nk * r, h);
        var a = groupedBa.narrow(1, r, r).reshape(nk * r, h);
        return (cat(new[] { q, k, v }, 0).MoveToOuterDisposeScope(), z.contiguous().MoveToOuterDisposeScope(),
            b.contiguous().MoveToOuterDisposeScope(), a.contiguous().MoveToOuterDisposeScope());
    }

    /// <summary>Output [B, L, H] for normed hidden states x [B, L, H]; positions need no rotary tables.</summary>
    public override Tensor Forward(Tensor x, RotaryTables rope)
    {
        using var scope = NewDisposeScope();
        var s = Spec;
        long batch = x.shape[0], l = x.shape[1];
        var mixed = nn.functional.silu(CausalConv(Qkv.Forward(x)));
        var q = mixed.narrow(-1, 0, s.KeyDim).reshape(batch, l, s.NumKeyHeads, s.KeyHeadDim);
        var k = mixed.narrow(-1, s.KeyDim, s.KeyDim).reshape(batch, l, s.NumKeyHeads, s.KeyHeadDim);
        var v = mixed.narrow(-1, 2L * s.KeyDim, s.ValueDim).reshape(batch, l, s.NumValueHeads, s.ValueHeadDim);
        var z = Z.Forward(x).view(batch, l, s.NumValueHeads, s.ValueHeadDim);
        var beta = B.Forward(x).sigmoid();
        var g = -ALog.exp() * Softplus(A.Forward(x).Plus(DtBias));
        if (s.HeadRatio > 1)
        {
            q = q.repeat_interleave(s.HeadRatio, 2);
            k = k.repeat_interleave(s.HeadRatio, 2);
        }
        q = L2Normalize(q).Times(Scale);
        k = L2Normalize(k);
        var o = Recurrence(q, k, v, g, beta);
        var normed = o * o.Power(2).mean(new long[] { -1 }, keepdim: true).Plus(NormEps).rsqrt() * NormWeight * nn.functional.silu(z);
        return OutProj.Forward(normed.reshape(batch, l, s.ValueDim)).MoveToOuterDisposeScope();
    }

    /// <summary>Depthwise causal convolution of x [B, L, C] over the last <see cref="LinearAttentionSpec.ConvKernel"/> positions (zeros before the start).</summary>
    /// <summary>
    /// softplus(a) = log(1 + eᵃ), and a itself above 20 where that is exact in float32 (torch's default β = 1 and
    /// threshold 20; TorchSharp's softplus makes its β and threshold Scalars implicitly).
    /// </summary>
    private static Tensor Softplus(Tensor a) => where(a.GreaterThan(20), a, a.exp().log1p());

    private Tensor CausalConv(Tensor x)
    {
        using var scope = NewDisposeScope();
        var kernel = Spec.ConvKernel;
        var l = x.shape[1];
        var padded = nn.functional.pad(x, new long[] { 0, 0, kernel - 1, 0 });
        var y = zeros_like(x);
        for (var j = 0; j < kernel; j++)
            y = y.Plus(padded.narrow(1, j, l) * ConvWeight.select(1, j));
        return y.MoveToOuterDisposeScope();
    }

    private static Tensor L2Normalize(Tensor x) => x * x.Power(2).sum(new long[] { -1 }, keepdim: true).Plus(L2NormEps).rsqrt();

    /// <summary>
    /// The gated delta rule over positions for q, k [B, L, h, d_k], v [B, L, h, d_v], g, β [B, L, h] → o [B, L, h, d_v].
    /// Each step runs in its own dispose scope, so memory stays at one state whatever the length.
    /// </summary>
    public static Tensor Recurrence(Tensor q, Tensor k, Tensor v, Tensor g, Tensor beta)
    {
        using var scope = NewDisposeScope();
        long batch = q.shape[0], l = q.shape[1], heads = q.shape[2], dk = q.shape[3], dv = v.shape[3];
        var state = zeros(new[] { batch, heads, dk, dv }, dtype: v.dtype, device: v.device);
        var outputs = new Tensor[l];
        for (var t = 0L; t < l; t++)
        {
            Tensor next, output;
            using (var step = NewDisposeScope())
            {
                var kt = k.select(1, t).unsqueeze(-2);                                // [B, h, 1, dk]
                var decayed = state * g.select(1, t).exp().unsqueeze(-1).unsqueeze(-1);
                var remembered = matmul(kt, decayed);                                  // (Sᵀk)ᵀ [B, h, 1, dv]
                var delta = (v.select(1, t).unsqueeze(-2) - remembered) * beta.select(1, t).unsqueeze(-1).unsqueeze(-1);
                next = decayed.Plus_(matmul(kt.transpose(-2, -1), delta)).MoveToOuterDisposeScope();
                output = matmul(q.select(1, t).unsqueeze(-2), next).squeeze(-2).MoveToOuterDisposeScope();
            }
            state.Dispose();
            state = next;
            outputs[t] = output;
        }
        return stack(outputs, 1).MoveToOuterDisposeScope();
    }

    public override void Dispose()
    {
        Qkv.Dispose();
        Z.Dispose();
        B.Dispose();
        A.Dispose();
        ConvWeight.Dispose();
        ALog.Dispose();
        DtBias.Dispose();
        NormWeight.Dispose();
        OutProj.Dispose();
    }
}
