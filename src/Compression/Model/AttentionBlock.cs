using TorchSharp;
using static TorchSharp.torch;

namespace MoECompress.Compression.Model;

/// <summary>Causal self-attention of one decoder layer (standard grouped-query or DeepSeek latent attention).</summary>
public abstract class AttentionBlock : IDisposable
{
    protected AttentionBlock(double scale, int? slidingWindow)
    {
        Scale = scale;
        SlidingWindow = slidingWindow;
    }

    /// <summary>Softmax scale applied to q·kᵀ.</summary>
    public double Scale { get; }
    /// <summary>Sliding window (a query sees keys with q − k &lt; window); null for full causal attention.</summary>
    public int? SlidingWindow { get; }

    /// <summary>Attention output [B, L, H] for normed hidden states x [B, L, H], positions 0..L−1.</summary>
    public abstract Tensor Forward(Tensor x, RotaryTables rope);

    /// <summary>
    /// softmax(q·kᵀ·scale + causal mask)·v for q, k [B, h, L, Dq] and v [B, h, L, Dv] → [B, h, L, Dv], float32.
    /// With <paramref name="slidingWindow"/>, query i sees keys j with i − window &lt; j ≤ i.
    /// </summary>
    public static Tensor Attend(Tensor q, Tensor k, Tensor v, double scale, int? slidingWindow = null)
    {
        using var scope = NewDisposeScope();
        var dq = q.shape[^1];
        var length = q.shape[^2];
        var defaultScale = 1.0 / Math.Sqrt(dq);
        // scaled_dot_product_attention in TorchSharp 0.107 has no scale argument: fold the ratio into q.
        if (Math.Abs(scale - defaultScale) > 1e-12 * defaultScale)
            q = q.Times(scale / defaultScale);
        Tensor result;
        if (slidingWindow is null || slidingWindow.Value >= length)
            result = nn.functional.scaled_dot_product_attention(q, k, v, is_casual: true);
        else
        {
            var i = ScalarOps.Range(length, device: q.device).unsqueeze(1);
            var j = ScalarOps.Range(length, device: q.device).unsqueeze(0);
            var visible = j.le(i).logical_and((i - j).LessThan(slidingWindow.Value));
            result = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask: visible);
        }
        return result.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// <see cref="Attend"/> with GPT-OSS attention sinks [h]: each head's softmax over the visible keys gets one extra
    /// logit, the sink, whose probability is dropped (it attends to nothing), so the weights sum to less than one.
    /// </summary>
    public static Tensor AttendWithSinks(Tensor q, Tensor k, Tensor v, double scale, int? slidingWindow, Tensor sinks)
    {
        using var scope = NewDisposeScope();
        var b = q.shape[0];
        var heads = q.shape[1];
        var length = q.shape[^2];
        var logits = matmul(q, k.transpose(-2, -1)).Times(scale);
        var i = ScalarOps.Range(length, device: q.device).unsqueeze(1);
        var j = ScalarOps.Range(length, device: q.device).unsqueeze(0);
        var visible = j.le(i);
        if (slidingWindow is { } w) visible = visible.logical_and((i - j).LessThan(w));
        logits = logits.FillWhere(visible.logical_not(), double.NegativeInfinity);
        var sink = sinks.to(logits.dtype).view(1, heads, 1, 1).expand(b, heads, length, 1);
        var probabilities = cat(new[] { logits, sink }, -1).softmax(-1).narrow(-1, 0, length);
        return matmul(probabilities, v).MoveToOuterDisposeScope();
    }

    public abstract void Dispose();
}
