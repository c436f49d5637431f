using MoECompress.Compression.Model;
using static TorchSharp.torch;

namespace MoECompress.Compression.Importance;

/// <summary>
/// NAEE's error of one MoE layer: with x_t the cached block inputs and y_t the block's routed output (shared experts
/// left out: they are never pruned and cancel), error(R) = Σ_t ‖Block.Forward(x_t, experts R never routed to) − y_t‖²
/// over every calibration token, accumulated in float64. The router simulates pruning exactly as the pruned checkpoint
/// routes (softmax over the kept experts only; see <see cref="MoERouter.Route"/>).
/// </summary>
public sealed class MaskedBlockError
{
    private readonly IReadOnlyList<(Tensor Input, Tensor RoutedOutput)> _chunks;

    /// <summary>Binds a block and its cached micro-batches (owned by the caller, valid while this object is used).</summary>
    public MaskedBlockError(MoEBlock block, IReadOnlyList<(Tensor Input, Tensor RoutedOutput)> chunks)
    {
        ArgumentNullException.ThrowIfNull(block);
        ArgumentNullException.ThrowIfNull(chunks);
        Block = block;
        _chunks = chunks;
    }

    /// <summary>The layer's MoE block.</summary>
    public MoEBlock Block { get; }

    /// <summary>E.</summary>
    public int NumExperts => Block.Experts.Count;

    /// <summary>Calibration tokens cached.</summary>
    public long Tokens => _chunks.Sum(c => c.Input.shape[0]);

    /// <summary>Number of block forwards made so far.</summary>
    public long Forwards { get; private set; }

    /// <summary>error(R) for the removed experts <paramref name="removed"/>.</summary>
    public double Error(IReadOnlyList<int> removed)
    {
        ArgumentNullException.ThrowIfNull(removed);
        var kept = Enumerable.Repeat(true, NumExperts).ToArray();
        foreach (var r in removed) kept[r] = false;
        var options = new MoEForwardOptions { KeptExperts = kept, IncludeSharedExperts = false };
        double total = 0;
        foreach (var (x, y) in _chunks)
        {
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            var output = Block.Forward(x, options);
            total += (output - y).to_type(ScalarType.Float64).Squared().sum().item<double>();
            Forwards++;
        }
        return total;
    }
}
