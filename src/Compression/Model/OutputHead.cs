using TorchSharp;
using static TorchSharp.torch;

namespace MoECompress.Compression.Model;

/// <summary>
/// Final norm and lm_head [V, H] (float32; the embedding table when the model ties them), with the optional lm_head
/// bias of Phi-3.5-MoE. Owns its weights.
/// </summary>
public sealed class OutputHead : IDisposable
{
    public OutputHead(INorm norm, Tensor lmHead, Tensor? bias = null)
    {
        if (lmHead.dim() != 2 || lmHead.shape[1] != norm.Size) throw new ArgumentException("lm_head must be [V, H] with H the norm size");
        if (bias is not null && (bias.dim() != 1 || bias.shape[0] != lmHead.shape[0])) throw new ArgumentException("lm_head bias must be [V]");
        Norm = norm;
        LmHead = lmHead;
        Bias = bias;
    }

    public INorm Norm { get; }
    public Tensor LmHead { get; }
    /// <summary>lm_head.bias [V]; null when the model has none.</summary>
    public Tensor? Bias { get; }
    public long VocabSize => LmHead.shape[0];
    /// <summary>GraniteMoE logits_scaling: the logits are divided by it (1 for other models).</summary>
    public double LogitsScaling { get; init; } = 1.0;

    /// <summary>Logits [..., V] (float32) for last-layer hidden states [..., H].</summary>
    public Tensor Logits(Tensor hidden)
    {
        using var scope = NewDisposeScope();
        var logits = nn.functional.linear(Norm.Forward(hidden), LmHead, Bias);
        if (LogitsScaling != 1.0)
        {
            using var s = LogitsScaling.ToScalar();
            logits = logits.div(s);
        }
        return logits.MoveToOuterDisposeScope();
    }

    public void Dispose()
    {
        Norm.Dispose();
        LmHead.Dispose();
        Bias?.Dispose();
    }
}
