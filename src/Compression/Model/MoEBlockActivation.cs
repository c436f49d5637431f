using static TorchSharp.torch;

namespace MoECompress.Compression.Model;

/// <summary>
/// A MoE block's work on one micro-batch. Valid only during <see cref="ILayerObserver.OnMoEBlock"/>; the
/// <see cref="Block"/> can be re-run on <see cref="Input"/> with other settings (pruned/replaced experts) for
/// what-if measurements, and <see cref="ComputeExpert"/> runs any expert on any tokens (e.g. all of them).
/// </summary>
public sealed class MoEBlockActivation
{
    internal MoEBlockActivation(MoEBlock block, MicroBatch batch, Tensor input, MoERouting routing,
        Tensor routedOutput, Tensor? sharedOutput, Tensor output)
    {
        Block = block;
        Batch = batch;
        Input = input;
        Routing = routing;
        RoutedOutput = routedOutput;
        SharedOutput = sharedOutput;
        Output = output;
    }

    public int Layer => Block.Layer;
    public MoEBlock Block { get; }
    public MicroBatch Batch { get; }
    /// <summary>Block input (post-attention-normed hidden states) [T, H].</summary>
    public Tensor Input { get; }
    public MoERouting Routing { get; }
    /// <summary>Σ_k g_k · f_k(x) over the routed experts [T, H].</summary>
    public Tensor RoutedOutput { get; }
    /// <summary>Shared-expert contribution (after its sigmoid gate when the model has one) [T, H]; null without shared experts.</summary>
    public Tensor? SharedOutput { get; }
    /// <summary>Block output = routed + shared [T, H].</summary>
    public Tensor Output { get; }

    /// <summary>
    /// Runs expert <paramref name="expert"/> on the given rows of <see cref="Input"/> (all rows when null). Returns new
    /// tensors (down_proj input [n, I], output [n, H]) the caller disposes.
    /// </summary>
    public (Tensor Intermediate, Tensor Output) ComputeExpert(int expert, Tensor? rows = null)
    {
        using var scope = NewDisposeScope();
        var x = rows is null ? Input : Input.index_select(0, rows);
        var (h, y) = Block.Experts[expert].ForwardWithIntermediate(x);
        return (h.MoveToOuterDisposeScope(), y.MoveToOuterDisposeScope());
    }
}
