using TorchSharp;
using static TorchSharp.torch;

namespace MoECompress.Compression.Model;

/// <summary>
/// One pre-norm decoder layer: h = x + attn(norm₁(x)); out = h + mlp(norm₂(h)), where mlp is a dense gated MLP or a
/// sparse <see cref="MoEBlock"/>. Owns its weights; load it with <see cref="ModelEngine.LoadLayer"/>.
/// </summary>
public sealed class DecoderLayer : IDisposable
{
    public DecoderLayer(int index, INorm inputNorm, AttentionBlock attention, INorm postAttentionNorm, GatedMlp? mlp, MoEBlock? moe)
    {
        if ((mlp is null) == (moe is null)) throw new ArgumentException($"layer {index} needs exactly one of a dense MLP and a MoE block");
        Index = index;
        InputNorm = inputNorm;
        Attention = attention;
        PostAttentionNorm = postAttentionNorm;
        Mlp = mlp;
        MoE = moe;
    }

    public int Index { get; }
    public INorm InputNorm { get; }
    public AttentionBlock Attention { get; }
    public INorm PostAttentionNorm { get; }
    /// <summary>Dense MLP (null in MoE layers).</summary>
    public GatedMlp? Mlp { get; }
    /// <summary>Sparse MoE block (null in dense layers).</summary>
    public MoEBlock? MoE { get; }
    public bool IsMoE => MoE is not null;
    /// <summary>GraniteMoE residual_multiplier: scales the attention and MLP outputs before each residual add (1 elsewhere).</summary>
    public double ResidualMultiplier { get; init; } = 1.0;
    /// <summary>What-if settings for the MoE block in <see cref="Forward"/> (e.g. the kept experts of a layer a sequential
    /// prune has just decided, so that the next layer sees the pruned layer's outputs); null runs the block as stored.</summary>
    public MoEForwardOptions? MoEOptions { get; set; }
    /// <summary>A MoE block run in <see cref="Forward"/> instead of <see cref="MoE"/> (e.g. the merged block of a layer a
    /// sequential merge has just decided), with <see cref="MoEOptions"/>; not owned by the layer. Null runs <see cref="MoE"/>.</summary>
    public MoEBlock? MoEReplacement { get; set; }

    /// <summary>Layer output [B, L, H] for hidden states x [B, L, H].</summary>
    /// <param name="x">Input hidden states (float32).</param>
    /// <param name="rope">Rotary tables for L positions.</param>
    /// <param name="observer">Optional observer of the MoE block and the layer output.</param>
    /// <param name="batch">Which sequences the rows of x are (defaults to sequences 0..B−1).</param>
    public Tensor Forward(Tensor x, RotaryTables rope, ILayerObserver? observer = null, MicroBatch? batch = null)
    {
        using var scope = NewDisposeScope();
        if (x.dim() != 3) throw new ArgumentException("decoder layer input must be [B, L, H]");
        var b = x.shape[0];
        var l = x.shape[1];
        var hidden = x.shape[2];
        if (rope.Length != l) throw new ArgumentException($"rotary tables cover {rope.Length} positions, input has {l}");
        batch ??= new MicroBatch(Enumerable.Range(0, (int)b).ToArray(), (int)l);

        var attnOut = Attention.Forward(InputNorm.Forward(x), rope);
        using var residualScale = ResidualMultiplier.ToScalar();
        var h = ResidualMultiplier == 1.0 ? x.Plus(attnOut) : x.Plus(attnOut.mul(residualScale));
        var normed = PostAttentionNorm.Forward(h);
        Tensor mlpOut = MoE is not null
            ? (MoEReplacement ?? MoE).Forward(normed.reshape(b * l, hidden), MoEOptions, observer, batch).view(b, l, hidden)
            : Mlp!.Forward(normed);
        var output = ResidualMultiplier == 1.0 ? h.Plus(mlpOut) : h.Plus(mlpOut.mul(residualScale));
        observer?.OnLayerOutput(new LayerActivation(Index, batch, x, output));
        return output.MoveToOuterDisposeScope();
    }

    public void Dispose()
    {
        InputNorm.Dispose();
        Attention.Dispose();
        PostAttentionNorm.Dispose();
        Mlp?.Dispose();
        MoE?.Dispose();
        NativeHeap.Trim(); // a layer is the biggest group of tensors the pipeline frees at once
    }
}
