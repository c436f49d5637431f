using static TorchSharp.torch;

namespace MoECompress.Compression.Model;

/// <summary>Final RMSNorm and lm_head [V, H] (float32; the embedding table when the model ties them). Owns its weights.</summary>
public sealed class OutputHead : IDisposable
{
    public OutputHead(RmsNorm norm, Tensor lmHead)
    {
        if (lmHead.dim() != 2 || lmHead.shape[1] != norm.Size) throw new ArgumentException("lm_head must be [V, H] with H the norm size");
        Norm = norm;
        LmHead = lmHead;
    }

    public RmsNorm Norm { get; }
    public Tensor LmHead { get; }
    public long VocabSize => LmHead.shape[0];

    /// <summary>Logits [..., V] (float32) for last-layer hidden states [..., H].</summary>
    public Tensor Logits(Tensor hidden)
    {
        using var scope = NewDisposeScope();
        return nn.functional.linear(Norm.Forward(hidden), LmHead).MoveToOuterDisposeScope();
    }

    public void Dispose()
    {
        Norm.Dispose();
        LmHead.Dispose();
    }
}
