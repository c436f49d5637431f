using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MoECompress.Compression.Training;

/// <summary>
/// Causal self-attention as Hugging Face MixtralAttention: q/k/v/o projections without bias, grouped-query attention
/// (key/value head j serves query heads j·r … j·r+r−1), rotary embeddings in the rotate_half layout
/// (cos/sin of [θ⁻⁰ᐟᵈ … ] repeated over both halves of the head), softmax(q·kᵀ/√d) with a causal mask.
/// </summary>
public sealed class TrainingAttention : nn.Module<Tensor, Tensor>
{
    private readonly int heads, kvHeads, headDim;
    private readonly double ropeTheta;
    private readonly bool bf16;

    public Parameter q_proj, k_proj, v_proj, o_proj;

    public TrainingAttention(string name, int hidden, int heads, int kvHeads, double ropeTheta, bool bf16,
        Func<long[], Tensor> init, Func<long[], Tensor> initOutput) : base(name)
    {
        this.heads = heads;
        this.kvHeads = kvHeads;
        headDim = hidden / heads;
        this.ropeTheta = ropeTheta;
        this.bf16 = bf16;
        q_proj = new Parameter(init([heads * headDim, hidden]));
        k_proj = new Parameter(init([kvHeads * headDim, hidden]));
        v_proj = new Parameter(init([kvHeads * headDim, hidden]));
        o_proj = new Parameter(initOutput([hidden, heads * headDim]));
        RegisterComponents();
    }

    /// <summary>cos and sin tables [T, headDim] for positions 0…T−1, as HF MixtralRotaryEmbedding computes them.</summary>
    public static (Tensor Cos, Tensor Sin) RotaryTables(long length, int headDim, double theta)
    {
        using var scope = NewDisposeScope();
        var exponents = ScalarOps.Range(0, headDim, 2).to(ScalarType.Float32).Over(headDim);
        using var thetaT = torch.tensor(theta); // 0-dim float64: the float32 exponents set the result type
        var invFreq = torch.pow(thetaT, exponents).reciprocal();
        var positions = ScalarOps.Range(length).to(ScalarType.Float32);
        var freqs = torch.outer(positions, invFreq);
        var emb = torch.cat([freqs, freqs], -1);
        return (emb.cos().MoveToOuterDisposeScope(), emb.sin().MoveToOuterDisposeScope());
    }

    internal static Tensor RotateHalf(Tensor x)
    {
        var half = x.shape[^1] / 2;
        var x1 = x.narrow(-1, 0, half);
        var x2 = x.narrow(-1, half, half);
        return torch.cat([-x2, x1], -1);
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0], t = x.shape[1];
        var q = TrainingLinear.Apply(x, q_proj, bf16).view(b, t, heads, headDim).transpose(1, 2);
        var k = TrainingLinear.Apply(x, k_proj, bf16).view(b, t, kvHeads, headDim).transpose(1, 2);
        var v = TrainingLinear.Apply(x, v_proj, bf16).view(b, t, kvHeads, headDim).transpose(1, 2);

        var (cos, sin) = RotaryTables(t, headDim, ropeTheta);
        q = (q * cos).Plus(RotateHalf(q) * sin);
        k = (k * cos).Plus(RotateHalf(k) * sin);

        if (kvHeads != heads)
        {
            int rep = heads / kvHeads;
            k = k.unsqueeze(2).expand(b, kvHeads, rep, t, headDim).reshape(b, heads, t, headDim);
            v = v.unsqueeze(2).expand(b, kvHeads, rep, t, headDim).reshape(b, heads, t, headDim);
        }
        var attended = nn.functional.scaled_dot_product_attention(q, k, v, is_casual: true);
        var merged = attended.transpose(1, 2).reshape(b, t, heads * headDim);
        return TrainingLinear.Apply(merged, o_proj, bf16).MoveToOuterDisposeScope();
    }
}
