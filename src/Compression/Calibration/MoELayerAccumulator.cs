using MoECompress.Compression.Model;
using static TorchSharp.torch;

namespace MoECompress.Compression.Calibration;

/// <summary>
/// Running sums of one MoE layer for <see cref="CalibrationCollector"/>: counts as int64, every other sum in float64
/// (C# arrays of E, E×E or E×H values: nothing here grows with H² or I²).
/// </summary>
internal sealed class MoELayerAccumulator
{
    private readonly CalibrationCollectorOptions _options;
    private readonly long[] _selection;
    private readonly long[] _routed;
    private readonly double[] _scoreMass;
    private readonly double[] _gateMass;
    private readonly double[] _logitSum;
    private readonly double[] _reapSum;
    private readonly double[] _maxAbs;
    private readonly long[] _coselection;
    private readonly double[] _outputSum;
    private readonly double[]? _allTokenOutputSum;
    private readonly Dictionary<int, float[]>? _logits;

    public MoELayerAccumulator(int layer, int numExperts, int topK, int hiddenSize, int intermediateSize, CalibrationCollectorOptions options)
    {
        Layer = layer;
        NumExperts = numExperts;
        TopK = topK;
        HiddenSize = hiddenSize;
        IntermediateSize = intermediateSize;
        _options = options;
        _selection = new long[numExperts];
        _routed = new long[numExperts];
        _scoreMass = new double[numExperts];
        _gateMass = new double[numExperts];
        _logitSum = new double[numExperts];
        _reapSum = new double[numExperts];
        _maxAbs = new double[numExperts];
        _coselection = new long[(long)numExperts * numExperts];
        _outputSum = new double[(long)numExperts * hiddenSize];
        if (options.MeanOutputOverAllTokens) _allTokenOutputSum = new double[(long)numExperts * hiddenSize];
        if (options.KeepRouterLogits) _logits = new Dictionary<int, float[]>();
    }

    public int Layer { get; }
    public int NumExperts { get; }
    public int TopK { get; }
    public int HiddenSize { get; }
    public int IntermediateSize { get; }
    public long Tokens { get; private set; }
    public IReadOnlyDictionary<int, float[]>? RouterLogits => _logits;

    public void CheckShape(int numExperts, int topK, int hiddenSize, int intermediateSize)
    {
        if (numExperts != NumExperts || topK != TopK || hiddenSize != HiddenSize || intermediateSize != IntermediateSize)
            throw new InvalidOperationException(
                $"layer {Layer}: MoE block shape changed during calibration (E={numExperts}, k={topK}, H={hiddenSize}, I={intermediateSize}; " +
                $"first seen E={NumExperts}, k={TopK}, H={HiddenSize}, I={IntermediateSize})");
    }

    /// <summary>Per-expert sums from one expert's routed tokens of one micro-batch.</summary>
    public void AddExpert(ExpertActivation a)
    {
        using var scope = NewDisposeScope();
        var e = a.Expert;
        var n = a.TokenCount;
        if (n == 0) return;
        var y = a.Output.to(ScalarType.Float64);
        var g = a.Gates.to(ScalarType.Float64).reshape(-1);
        var norms = y.Squared().sum(1).sqrt();
        _reapSum[e] += (g * norms).sum().item<double>();
        _maxAbs[e] = Math.Max(_maxAbs[e], y.abs().max().item<double>());
        _routed[e] += n;
        AddRow(_outputSum, e, y.sum(0L));

    }

    /// <summary>Routing sums from one micro-batch of the block.</summary>
    public void AddBlock(MoEBlockActivation a)
    {
        using var scope = NewDisposeScope();
        var routing = a.Routing;
        var t = routing.TokenCount;
        if (t == 0) return;
        var idx = routing.TopKIndices;
        var mask = zeros(t, NumExperts, ScalarType.Float64).scatter_(1, idx, ones(idx.shape, ScalarType.Float64));
        var gates = zeros(t, NumExperts, ScalarType.Float64).scatter_(1, idx, routing.TopKWeights.to(ScalarType.Float64));
        AddVector(_scoreMass, (mask * routing.Scores.to(ScalarType.Float64)).sum(0L));
        AddVector(_logitSum, (mask * routing.Logits.to(ScalarType.Float64)).sum(0L));
        AddVector(_gateMass, gates.sum(0L));
        var counts = mask.sum(0L).contiguous().data<double>();
        for (var e = 0; e < NumExperts; e++) _selection[e] += (long)Math.Round(counts[e]);
        var co = mask.t().mm(mask).contiguous().data<double>();
        for (var i = 0; i < _coselection.Length; i++) _coselection[i] += (long)Math.Round(co[i]);
        Tokens += t;

        if (_allTokenOutputSum is not null)
        {
            for (var e = 0; e < NumExperts; e++)
            {
                var (h, y) = a.ComputeExpert(e);
                using (h)
                using (y)
                using (var sum = y.to(ScalarType.Float64).sum(0L))
                    AddRow(_allTokenOutputSum, e, sum);
            }
        }

        if (_logits is not null) KeepLogits(a.Batch, routing.Logits);
    }

    private void KeepLogits(MicroBatch batch, Tensor logits)
    {
        var values = logits.to(ScalarType.Float32).contiguous().data<float>().ToArray();
        var rowsPerSequence = batch.SequenceLength * NumExperts;
        for (var b = 0; b < batch.SequenceIndices.Count; b++)
        {
            var seq = batch.SequenceIndices[b];
            if (_logits!.ContainsKey(seq))
                throw new InvalidOperationException($"layer {Layer}: sequence {seq} went through the layer twice");
            var part = new float[rowsPerSequence];
            Array.Copy(values, (long)b * rowsPerSequence, part, 0, rowsPerSequence);
            _logits[seq] = part;
        }
    }

    private static void AddVector(double[] target, Tensor values)
    {
        var v = values.contiguous().data<double>();
        for (var i = 0; i < target.Length; i++) target[i] += v[i];
    }

    private void AddRow(double[] target, int expert, Tensor row)
    {
        var v = row.contiguous().data<double>();
        var offset = expert * HiddenSize;
        for (var j = 0; j < HiddenSize; j++) target[offset + j] += v[j];
    }

    /// <summary>The layer's statistics (copies; the accumulator stays usable).</summary>
    public MoELayerStatistics Build()
    {
        var e = NumExperts;
        var n = Tokens;
        var tcess = _logitSum.Select(s => n == 0 ? 0 : s / n).ToArray();
        var reap = Enumerable.Range(0, e).Select(i => _routed[i] == 0 ? 0 : _reapSum[i] / _routed[i]).ToArray();
        var mean = new float[_outputSum.Length];
        for (var i = 0; i < e; i++)
            for (var j = 0; j < HiddenSize; j++)
                mean[i * HiddenSize + j] = _routed[i] == 0 ? 0f : (float)(_outputSum[i * HiddenSize + j] / _routed[i]);
        float[]? meanAll = null;
        if (_allTokenOutputSum is not null)
            meanAll = _allTokenOutputSum.Select(s => n == 0 ? 0f : (float)(s / n)).ToArray();

        return new MoELayerStatistics(Layer, e, TopK, HiddenSize, IntermediateSize, n,
            (long[])_selection.Clone(), (long[])_routed.Clone(), (double[])_scoreMass.Clone(), (double[])_gateMass.Clone(),
            tcess, reap, (double[])_maxAbs.Clone(), (long[])_coselection.Clone(), mean, meanAll);
    }
}
