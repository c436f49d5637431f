using static TorchSharp.torch;

namespace MoECompress.Compression.Model;

/// <summary>
/// One routed expert at work on one micro-batch: the n tokens routed to it, what it received and what it produced.
/// Valid only during <see cref="ILayerObserver.OnExpert"/>.
/// </summary>
public sealed class ExpertActivation
{
    internal ExpertActivation(int layer, int expert, MicroBatch batch, MoERouting routing, Tensor tokenRows,
        Tensor topKSlots, Tensor input, Tensor intermediate, Tensor output, Tensor gates)
    {
        Layer = layer;
        Expert = expert;
        Batch = batch;
        Routing = routing;
        TokenRows = tokenRows;
        TopKSlots = topKSlots;
        Input = input;
        Intermediate = intermediate;
        Output = output;
        Gates = gates;
    }

    public int Layer { get; }
    public int Expert { get; }
    public MicroBatch Batch { get; }
    /// <summary>The routing of the whole micro-batch.</summary>
    public MoERouting Routing { get; }
    /// <summary>Rows of the micro-batch token matrix routed to this expert [n] (int64, ascending).</summary>
    public Tensor TokenRows { get; }
    /// <summary>For each routed token, the rank of this expert in its top-k (0 = best) [n] (int64).</summary>
    public Tensor TopKSlots { get; }
    /// <summary>Expert input x (= gate_proj and up_proj input) [n, H].</summary>
    public Tensor Input { get; }
    /// <summary>down_proj input act(gate(x))·up(x) [n, I].</summary>
    public Tensor Intermediate { get; }
    /// <summary>Unweighted expert output f(x) [n, H].</summary>
    public Tensor Output { get; }
    /// <summary>Gate weight g of this expert for each routed token [n] (as used in the block sum).</summary>
    public Tensor Gates { get; }
    public long TokenCount => TokenRows.shape[0];
}
