using MoECompress.Compression.Calibration;
using MoECompress.Compression.Model;
using MoECompress.Formats.Families;
using MoECompress.Formats.Quantized;
using MoECompress.Formats.Safetensors;
using static TorchSharp.torch;

namespace MoECompress.Compression.Quantization;

/// <summary>
/// Quantizes and writes the routed experts of one MoE layer, a chunk of experts at a time (<see cref="WriteExperts"/>):
/// per-expert tensors become packed modules as soon as they are quantized; fused tensors holding several experts are
/// rewritten in place (Ŵ, original dtype) and written by <see cref="Finish"/>. When a sink is given, it receives each
/// quantized projection's dequantized weight (compressed propagation: it goes into the engine's copy of the layer, at
/// once or through an <see cref="ExpertWeightSpill"/>), so that the layer's outputs can feed the next layer.
/// </summary>
internal sealed class LayerQuantizationWriter
{
    private readonly ModelCheckpoint _checkpoint;
    private readonly QuantizePlan _plan;
    private readonly QuantizeOptions _options;
    private readonly QuantizeRecipe _recipe;
    private readonly IReadOnlyDictionary<int, int[]> _widths;
    private readonly CheckpointWriter _writer;
    private readonly Action<int, ExpertProjection, Tensor>? _sink;
    private readonly int _layer;
    private readonly Dictionary<int, List<QuantizePlan.Entry>> _byExpert = [];
    private readonly List<QuantizePlan.Entry> _composites = [];
    private readonly Dictionary<string, Tensor> _compositeValues = [];

    public LayerQuantizationWriter(int layer, ModelCheckpoint checkpoint, QuantizePlan plan, QuantizeOptions options, QuantizeRecipe recipe,
        IReadOnlyDictionary<int, int[]> widths, CheckpointWriter writer, IEnumerable<QuantizePlan.Entry> entries,
        Action<int, ExpertProjection, Tensor>? sink)
    {
        _layer = layer;
        _checkpoint = checkpoint;
        _plan = plan;
        _options = options;
        _recipe = recipe;
        _widths = widths;
        _writer = writer;
        _sink = sink;
        foreach (var e in entries)
        {
            if (e.Kind == QuantizePlan.Kind.Composite) _composites.Add(e);
            else
            {
                if (!_byExpert.TryGetValue(e.Expert, out var list)) _byExpert[e.Expert] = list = [];
                list.Add(e);
            }
        }
    }

    /// <summary>
    /// Quantizes every projection of <paramref name="experts"/> (GPTQ with <paramref name="hessians"/> when the recipe
    /// allows it, RTN otherwise — fallbacks are added to <paramref name="fallbacks"/>) and writes the per-expert modules.
    /// </summary>
    public void WriteExperts(IEnumerable<int> experts, IReadOnlyDictionary<int, ExpertHessians>? hessians, ColdExpertRule? cold,
        List<QuantizeFallback> fallbacks, CancellationToken ct)
    {
        var src = _checkpoint.Tensors;
        foreach (var expert in experts)
        {
            ct.ThrowIfCancellationRequested();
            var layer = _layer;
            ExpertHessians? h = null;
            if (_recipe.Method == QuantizeMethod.Gptq && hessians?.GetValueOrDefault(expert) is { } collected)
            {
                h = _recipe.HessiansFor(cold, layer, collected);
                if (h is null)
                    fallbacks.Add(new QuantizeFallback(layer, expert, collected.Tokens,
                        _recipe.FallbackReason(cold, layer, expert, collected.Tokens)!, "rtn"));
            }
            var bits = _widths[layer][expert];
            foreach (var entry in _byExpert.GetValueOrDefault(expert) ?? [])
            {
                using (var scope = NewDisposeScope())
                {
                    var w = src.ToTensor(entry.Name, ScalarType.Float32);
                    using var q = _recipe.Quantize(w, entry.Projection, bits, h);
                    QuantizedModuleWriter.Write(_writer, entry.Prefix, q, _options.Format, entry.Info.DType, _plan.ActOrderTensors);
                    _sink?.Invoke(expert, entry.Projection, q.Dequantize());
                }
                if (h is not null) NativeHeap.Trim(); // a GPTQ solve's n x n matrices, freed: give them back at once
            }
            foreach (var entry in _composites)
                foreach (var (_, _, projection, r) in entry.Slices.Where(s => s.Expert == expert))
                {
                    using var scope = NewDisposeScope();
                    var w = ExpertWeights.Load(src, r);
                    using var q = _recipe.Quantize(w, projection, bits, h);
                    var deq = q.Dequantize();
                    SetSlice(entry, r, deq);
                    _sink?.Invoke(expert, projection, deq);
                }
        }
    }

    /// <summary>Writes the rewritten fused tensors (every expert must have been quantized).</summary>
    public void Finish()
    {
        foreach (var entry in _composites)
        {
            using var scope = NewDisposeScope();
            var full = Full(entry);
            _writer.Write(entry.Name, full.to(entry.Info.DType.ToScalarType()).contiguous());
            full.Dispose();
            _compositeValues.Remove(entry.Name);
        }
    }

    private Tensor Full(QuantizePlan.Entry entry)
    {
        if (!_compositeValues.TryGetValue(entry.Name, out var full))
            _compositeValues[entry.Name] = full = _checkpoint.Tensors.ToTensor(entry.Name, ScalarType.Float32).contiguous().DetachFromDisposeScope();
        return full;
    }

    private void SetSlice(QuantizePlan.Entry entry, ExpertTensorRef r, Tensor deq)
    {
        var full = Full(entry);
        var m = r.Layout switch
        {
            ExpertLayout.Fused => full[r.FusedIndex!.Value],
            ExpertLayout.FusedTransposed => full[r.FusedIndex!.Value].t(),
            _ => full,
        };
        var rows = deq.shape[0];
        var index = r.Interleaved
            ? ScalarOps.Range(r.RowStart, r.RowStart + 2 * rows, 2)
            : ScalarOps.Range(r.RowStart, r.RowStart + rows, 1);
        m.index_copy_(0, index, deq);
    }
}
