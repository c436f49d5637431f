using MoECompress.Compression.Calibration;
using MoECompress.Compression.Model;
using MoECompress.Formats.Families;
using static TorchSharp.torch;

namespace MoECompress.Compression.Quantization;

/// <summary>
/// The layer observer behind <see cref="ExpertSensitivity"/>. While one MoE layer runs it keeps each micro-batch's block
/// input and routing (top-k experts and gate weights) and Σ‖Y‖² of the block output; <see cref="Measure"/> then quantizes
/// each expert of a chunk (three projections, once per candidate width, with that layer's Hessians when GPTQ) and
/// measures ΔY on exactly the tokens routed to that expert. Because the
/// router is never quantized, replacing expert i changes the block output only on its routed tokens, by
/// g_ti·(f̂_i(x_t) − f_i(x_t)); summing ‖·‖² of that equals ‖Block.Forward(x, {i: f̂_i}) − Y‖² while computing one expert
/// instead of the whole block per (expert, width). Weights held: one expert at one width at a time.
/// </summary>
internal sealed class ExpertSensitivityObserver : ILayerObserver, IDisposable
{
    private readonly ColdExpertRule? _cold;
    private readonly ExpertSensitivityOptions _options;
    private readonly int[] _candidates;
    private readonly IProgress<string>? _progress;
    private readonly CancellationToken _ct;
    private readonly List<(Tensor Input, Tensor Indices, Tensor Weights)> _batches = [];
    private double _outputSquares;
    private readonly Dictionary<int, double[,]> _errors = [];
    private readonly Dictionary<int, long[]> _tokens = [];
    private readonly List<QuantizeFallback> _fallbacks = [];

    public ExpertSensitivityObserver(ColdExpertRule? cold, ExpertSensitivityOptions options, IProgress<string>? progress,
        CancellationToken cancellationToken)
    {
        _cold = cold;
        _options = options;
        _candidates = options.Candidates.Order().ToArray();
        _progress = progress;
        _ct = cancellationToken;
    }

    public IReadOnlyList<int> Candidates => _candidates;
    public Dictionary<int, double[,]> Errors => _errors;
    public Dictionary<int, long[]> Tokens => _tokens;
    public IReadOnlyList<QuantizeFallback> Fallbacks => _fallbacks;
    /// <summary>True once a layer's block inputs are held.</summary>
    public bool HasInputs => _batches.Count > 0;

    public void OnLayerStart(DecoderLayer layer) => Clear();

    public void OnMoEBlock(MoEBlockActivation activation)
    {
        using var scope = NewDisposeScope();
        _outputSquares += activation.Output.to(ScalarType.Float64).Squared().sum().item<double>();
        _batches.Add((
            activation.Input.to(ScalarType.Float32).clone().DetachFromDisposeScope(),
            activation.Routing.TopKIndices.clone().DetachFromDisposeScope(),
            activation.Routing.TopKWeights.to(ScalarType.Float32).clone().DetachFromDisposeScope()));
    }

    /// <summary>
    /// ε of the experts in <paramref name="experts"/> of the layer whose inputs are held, at every candidate width;
    /// <paramref name="hessians"/> are that layer's (GPTQ; null entries or RTN fall back as the recipe says).
    /// </summary>
    public void Measure(int layer, int count, Func<int, GatedMlp> expertOf, IReadOnlyList<int> experts, IReadOnlyDictionary<int, ExpertHessians>? hessians)
    {
        if (_batches.Count == 0) return;
        if (!_errors.TryGetValue(layer, out var errors)) _errors[layer] = errors = new double[count, _candidates.Length];
        if (!_tokens.TryGetValue(layer, out var tokens)) _tokens[layer] = tokens = new long[count];
        _progress?.Report($"sensitivity: layer {layer}, experts {experts[0]}..{experts[^1]} of {count} x {_candidates.Length} widths");
        var denominator = _outputSquares > 0 ? _outputSquares : 1.0;
        foreach (var e in experts)
        {
            _ct.ThrowIfCancellationRequested();
            using var scope = NewDisposeScope();
            var (x, g) = RoutedTokens(e);
            tokens[e] = x.shape[0];
            ExpertHessians? h = null;
            if (_options.Recipe.Method == QuantizeMethod.Gptq)
            {
                var reason = _options.Recipe.FallbackReason(_cold, layer, e, tokens[e]);
                if (reason is not null) _fallbacks.Add(new QuantizeFallback(layer, e, tokens[e], reason, "rtn"));
                else h = hessians?.GetValueOrDefault(e);
            }
            if (tokens[e] == 0) continue; // never routed: quantizing it cannot change the block output on these tokens
            var expert = expertOf(e);
            var y = expert.Forward(x);
            for (var b = 0; b < _candidates.Length; b++)
            {
                using var widthScope = NewDisposeScope();
                using var replacement = Quantized(expert, _candidates[b], h);
                var delta = (replacement.Forward(x) - y) * g.unsqueeze(1);
                errors[e, b] = delta.to(ScalarType.Float64).Squared().sum().item<double>() / denominator;
            }
        }
    }

    /// <summary>The rows of all stored micro-batches routed to <paramref name="expert"/> [n, H] and their gate weights [n].</summary>
    private (Tensor X, Tensor Gates) RoutedTokens(int expert)
    {
        var xs = new List<Tensor>();
        var gs = new List<Tensor>();
        foreach (var (input, indices, weights) in _batches)
        {
            var hit = indices.EqualTo(expert);
            var rows = hit.any(1).nonzero().squeeze(1);
            if (rows.shape[0] == 0) continue;
            xs.Add(input.index_select(0, rows));
            gs.Add((weights * hit.to(ScalarType.Float32)).sum(1).index_select(0, rows));
        }
        if (xs.Count == 0)
        {
            var h = _batches[0].Input.shape[1];
            return (zeros(0, h, ScalarType.Float32), zeros(0, ScalarType.Float32));
        }
        return (cat(xs, 0), cat(gs, 0));
    }

    /// <summary>A copy of <paramref name="expert"/> with its three projections quantized to <paramref name="bits"/> and
    /// dequantized (float32); biases copied. down_proj is solved first and each projection's float32 copy is released as
    /// soon as it is quantized: when the intermediate width is the larger one, the widest GPTQ solve (down_proj) runs with
    /// nothing of the replacement held; otherwise the last one (up_proj) runs beside the other two dequantized projections
    /// (<see cref="Pipeline.MemoryPlan"/> counts them).</summary>
    private GatedMlp Quantized(GatedMlp expert, int bits, ExpertHessians? hessians)
    {
        Tensor Dequantized(Tensor w, ExpertProjection p)
        {
            Tensor result;
            using (NewDisposeScope())
            using (var q = _options.Recipe.Quantize(w.to(ScalarType.Float32), p, bits, hessians))
                result = q.Dequantize().DetachFromDisposeScope();
            if (hessians is not null) NativeHeap.Trim(); // a GPTQ solve's n x n matrices and the float32 copy, freed: give them back at once
            return result;
        }
        Tensor? down = null, gate = null;
        try
        {
            down = Dequantized(expert.Down, ExpertProjection.Down);
            gate = Dequantized(expert.Gate, ExpertProjection.Gate);
            var up = Dequantized(expert.Up, ExpertProjection.Up);
            return new GatedMlp(gate, up, down, expert.Activation,
                expert.GateBias?.clone().DetachFromDisposeScope(),
                expert.UpBias?.clone().DetachFromDisposeScope(),
                expert.DownBias?.clone().DetachFromDisposeScope());
        }
        catch
        {
            down?.Dispose();
            gate?.Dispose();
            throw;
        }
    }

    /// <summary>Drops the held block inputs.</summary>
    public void Clear()
    {
        foreach (var (input, indices, weights) in _batches)
        {
            input.Dispose();
            indices.Dispose();
            weights.Dispose();
        }
        _batches.Clear();
        _outputSquares = 0;
    }

    public void Dispose() => Clear();
}
