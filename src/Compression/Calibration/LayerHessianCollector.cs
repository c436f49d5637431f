using MoECompress.Compression.Model;
using static TorchSharp.torch;

namespace MoECompress.Compression.Calibration;

/// <summary>
/// An <see cref="ILayerObserver"/> that sums the input Hessians of some routed experts of ONE decoder layer while that
/// layer runs (<see cref="StreamingSession.Observe"/>): what GPTQ, MC-MoE's sensitivity and whitened merging need, held
/// only while that layer is compressed. Each micro-batch's x xᵀ is computed and added in float32 (a micro-batch holds
/// at most a few thousand of an expert's tokens). Memory: <see cref="ExpertHessians.Bytes"/> per expert of
/// <see cref="Experts"/>, allocated when the expert first receives tokens. Dispose to free what <see cref="Build"/> did
/// not hand out.
/// </summary>
public sealed class LayerHessianCollector : ILayerObserver, IDisposable
{
    private readonly HashSet<int> _experts;
    private readonly HessianKind[] _kinds;
    private readonly Dictionary<int, Dictionary<HessianKind, Tensor>> _sums = [];
    private readonly Dictionary<int, long> _tokens = [];
    private readonly Dictionary<int, double> _gates = [];
    private long? _hidden;
    private long? _intermediate;

    /// <param name="layer">Decoder layer whose experts are observed.</param>
    /// <param name="experts">Routed experts to collect (e.g. one memory-sized chunk of the layer's experts).</param>
    /// <param name="kinds">Which matrices.</param>
    public LayerHessianCollector(int layer, IEnumerable<int> experts, IEnumerable<HessianKind> kinds)
    {
        Layer = layer;
        _experts = experts.ToHashSet();
        _kinds = kinds.Distinct().ToArray();
        if (_kinds.Length == 0) throw new ArgumentException("collect at least one Hessian kind", nameof(kinds));
    }

    /// <summary>The decoder layer observed.</summary>
    public int Layer { get; }
    /// <summary>The experts collected.</summary>
    public IReadOnlyCollection<int> Experts => _experts;

    /// <inheritdoc />
    public void OnExpert(ExpertActivation a)
    {
        if (a.Layer != Layer || !_experts.Contains(a.Expert) || a.TokenCount == 0) return;
        using var scope = NewDisposeScope();
        _hidden ??= a.Input.shape[1];
        _intermediate ??= a.Intermediate.shape[1];
        var x = a.Input.to(ScalarType.Float32);
        var h = a.Intermediate.to(ScalarType.Float32);
        var g = a.Gates.to(ScalarType.Float32).reshape(-1, 1);
        if (!_sums.TryGetValue(a.Expert, out var sums)) _sums[a.Expert] = sums = [];
        foreach (var kind in _kinds)
        {
            var v = ExpertHessians.IsInput(kind) ? x : h;
            var weighted = kind is HessianKind.InputWeighted or HessianKind.DownWeighted ? v * g : v;
            var product = weighted.t().mm(v);
            if (sums.TryGetValue(kind, out var sum)) sum.Plus_(product);
            else sums[kind] = product.DetachFromDisposeScope();
        }
        _tokens[a.Expert] = _tokens.GetValueOrDefault(a.Expert) + a.TokenCount;
        _gates[a.Expert] = _gates.GetValueOrDefault(a.Expert) + a.Gates.to(ScalarType.Float64).sum().item<double>();
    }

    /// <inheritdoc />
    public void OnMoEBlock(MoEBlockActivation activation)
    {
        if (activation.Layer != Layer) return;
        _hidden ??= activation.Input.shape[1];
        _intermediate ??= activation.Block.Experts[0].IntermediateSize;
    }

    /// <summary>
    /// The Hessians of every collected expert (all-zero matrices and 0 tokens for an expert no token reached), handed to
    /// the caller (dispose them). The collector is empty afterwards.
    /// </summary>
    /// <exception cref="InvalidOperationException">The layer has not run with this collector attached.</exception>
    public IReadOnlyDictionary<int, ExpertHessians> Build()
    {
        if (_hidden is not { } hidden || _intermediate is not { } inter)
            throw new InvalidOperationException($"layer {Layer} has not run with this collector attached (or has no MoE block)");
        var result = new Dictionary<int, ExpertHessians>();
        foreach (var e in _experts.Order())
        {
            var sums = _sums.GetValueOrDefault(e) ?? [];
            foreach (var kind in _kinds)
                if (!sums.ContainsKey(kind))
                {
                    var n = ExpertHessians.IsInput(kind) ? hidden : inter;
                    sums[kind] = zeros(n, n, ScalarType.Float32).DetachFromDisposeScope();
                }
            result[e] = new ExpertHessians(e, _tokens.GetValueOrDefault(e), _gates.GetValueOrDefault(e), sums);
        }
        _sums.Clear();
        return result;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var sums in _sums.Values)
            foreach (var t in sums.Values) t.Dispose();
        _sums.Clear();
    }
}
