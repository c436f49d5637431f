using MoECompress.Formats.Errors;
using MoECompress.Formats.Families;
using MoECompress.Formats.Quantized;
using MoECompress.Formats.Safetensors;

namespace MoECompress.Compression.Quantization;

/// <summary>
/// What <see cref="Quantizer"/> does with every tensor of the input, decided from the headers alone before any weight is
/// read: routed-expert projections of the decoder MoE layers become quantized modules (or, stored fused, are rewritten in
/// place as Ŵ); attention and shared-expert projections become RTN-quantized modules when their width is set; everything
/// else (routers, norms, embeddings, lm_head, biases, 1-D tensors, dense MLPs, MTP layers) is copied unchanged. Gives
/// the bytes of each expert at each width and of everything else, and the output's tensor specs for given widths.
/// </summary>
internal sealed class QuantizePlan
{
    internal enum Kind { Copy, Expert, Module, Composite }

    /// <summary>One input tensor and what happens to it.</summary>
    internal sealed record Entry(string Name, Kind Kind, TensorInfo Info)
    {
        /// <summary>Expert: layer, expert, projection. Module: the width.</summary>
        public int Layer { get; init; }
        public int Expert { get; init; }
        public ExpertProjection Projection { get; init; }
        public int Bits { get; init; }
        /// <summary>Composite: every (layer, expert, projection) slice it holds.</summary>
        public IReadOnlyList<(int Layer, int Expert, ExpertProjection Projection, ExpertTensorRef Ref)> Slices { get; init; } = [];
        /// <summary>Module name (the weight's name without ".weight").</summary>
        public string Prefix => Name.EndsWith(".weight", StringComparison.Ordinal) ? Name[..^".weight".Length] : Name;
        public long OutFeatures => Info.Shape[0];
        public long InFeatures => Info.Shape[^1];
    }

    private static readonly ExpertProjection[] Projections = [ExpertProjection.Gate, ExpertProjection.Up, ExpertProjection.Down];

    private readonly QuantizeOptions _options;
    private readonly Dictionary<(long Out, long In, SafetensorsDType DType, int Bits), long> _moduleBytes = [];

    private QuantizePlan(QuantizeOptions options, IReadOnlyList<Entry> entries, IReadOnlyList<int> layers, int experts,
        long expertParameters, bool composite)
    {
        _options = options;
        Entries = entries;
        Layers = layers;
        NumExperts = experts;
        ExpertParameters = expertParameters;
        HasCompositeExperts = composite;
    }

    public IReadOnlyList<Entry> Entries { get; }
    /// <summary>Decoder MoE layers whose experts are quantized.</summary>
    public IReadOnlyList<int> Layers { get; }
    public int NumExperts { get; }
    /// <summary>Parameters of one routed expert (gate + up + down).</summary>
    public long ExpertParameters { get; }
    /// <summary>Experts are stored fused (only dequantized output).</summary>
    public bool HasCompositeExperts { get; }
    /// <summary>Bytes of the input's tensors.</summary>
    public long InputBytes => Entries.Sum(e => e.Info.ByteLength);

    /// <summary>Reads the headers of <paramref name="checkpoint"/> and decides every tensor's fate.</summary>
    /// <exception cref="MoeCompressException">Usage: fused experts with a packed format, experts already stored quantized,
    /// modules the format cannot hold; Infeasible: no routed expert.</exception>
    public static QuantizePlan Build(ModelCheckpoint checkpoint, QuantizeOptions options)
    {
        var moe = checkpoint.MoE;
        var src = checkpoint.Tensors;
        var layers = moe.MoELayerIndices().ToList();
        if (layers.Count == 0 || moe.NumExperts == 0)
            throw new MoeCompressException(ErrorKind.Infeasible, $"{checkpoint.ConfigPath}: the model has no routed experts to quantize");
        if (options.Layers is { } range)
        {
            layers = layers.Where(range.Contains).ToList();
            if (layers.Count == 0)
                throw new MoeCompressException(ErrorKind.Usage,
                    $"--layers {range}: holds none of the model's MoE layers ({string.Join(", ", moe.MoELayerIndices())})");
        }
        if (moe.Mxfp4Experts)
            throw new MoeCompressException(ErrorKind.Usage,
                $"{checkpoint.Directory}: the routed experts are stored as MXFP4 (already quantized); quantize a bf16, f16 or f32 checkpoint");

        // Routed experts: where each projection lives.
        var expertOf = new Dictionary<string, (int Layer, int Expert, ExpertProjection Projection, ExpertTensorRef Ref)>(StringComparer.Ordinal);
        var composite = new Dictionary<string, List<(int, int, ExpertProjection, ExpertTensorRef)>>(StringComparer.Ordinal);
        long expertParameters = 0;
        foreach (var l in layers)
            for (var e = 0; e < moe.NumExperts; e++)
                foreach (var p in Projections)
                {
                    var r = checkpoint.Family.ExpertTensor(l, e, p, moe);
                    var info = src.GetInfo(r.TensorName);
                    if (!IsFloatWeight(info.DType))
                        throw new MoeCompressException(ErrorKind.Usage,
                            $"{checkpoint.Directory}: tensor '{r.TensorName}' is stored as {info.DType.ToHeaderName()} (already quantized); " +
                            "quantize a bf16, f16 or f32 checkpoint");
                    var whole = r.Layout == ExpertLayout.PerExpert && r.RowStart == 0 && r.RowCount < 0 && !r.Interleaved && info.Shape.Length == 2;
                    if (whole) expertOf[r.TensorName] = (l, e, p, r);
                    else
                    {
                        if (!composite.TryGetValue(r.TensorName, out var list)) composite[r.TensorName] = list = [];
                        list.Add((l, e, p, r));
                    }
                    if (l == layers[0] && e == 0)
                    {
                        var (rows, cols) = SliceShape(info, r);
                        expertParameters += rows * cols;
                    }
                }
        if (composite.Count > 0 && options.Format != QuantizedFormat.Dequantized)
            throw new MoeCompressException(ErrorKind.Usage,
                $"{checkpoint.Directory}: the routed experts are stored fused (tensor '{composite.Keys.First()}'); the {options.Format.ToName()} " +
                "format needs one Linear module per expert: use --format dequantized");

        var entries = new List<Entry>(src.Names.Count);
        foreach (var name in src.Names)
        {
            var info = src.GetInfo(name);
            if (expertOf.TryGetValue(name, out var x))
            {
                entries.Add(new Entry(name, Kind.Expert, info) { Layer = x.Layer, Expert = x.Expert, Projection = x.Projection });
                continue;
            }
            if (composite.TryGetValue(name, out var slices))
            {
                entries.Add(new Entry(name, Kind.Composite, info) { Slices = slices });
                continue;
            }
            var role = checkpoint.Classify(name);
            if (role.Role == TensorRole.RoutedExpert && role.QuantScale && role.Layer is { } ql && layers.Contains(ql) && !role.InMtp)
                throw new MoeCompressException(ErrorKind.Usage,
                    $"{checkpoint.Directory}: tensor '{name}' is a quantization scale of a routed expert (already quantized); quantize a bf16, f16 or f32 checkpoint");
            int? bits = role.Role switch
            {
                TensorRole.Attention => options.AttentionBits,
                TensorRole.SharedExpert => options.SharedExpertBits,
                _ => null,
            };
            var linear = info.Shape.Length == 2 && !role.IsBias && !role.QuantScale && name.EndsWith(".weight", StringComparison.Ordinal)
                         && IsFloatWeight(info.DType);
            entries.Add(bits is { } b && linear
                ? new Entry(name, Kind.Module, info) { Bits = b, Layer = role.Layer ?? -1 }
                : new Entry(name, Kind.Copy, info) { Layer = role.Layer ?? -1 });
        }
        var plan = new QuantizePlan(options, entries, layers, moe.NumExperts, expertParameters, composite.Count > 0);
        // Every module the output will hold must fit the format: fail now, not after calibration.
        foreach (var bitsOption in options.ExpertWidths)
            plan.ExpertBytes(bitsOption);
        _ = plan.FixedBytes;
        return plan;
    }

    private static bool IsFloatWeight(SafetensorsDType dtype) =>
        dtype is SafetensorsDType.F32 or SafetensorsDType.F16 or SafetensorsDType.BF16;

    private static (long Rows, long Cols) SliceShape(TensorInfo info, ExpertTensorRef r)
    {
        var (rows, cols) = r.Layout switch
        {
            ExpertLayout.FusedTransposed => (info.Shape[2], info.Shape[1]),
            ExpertLayout.Fused => (info.Shape[1], info.Shape[2]),
            _ => (info.Shape[0], info.Shape[1]),
        };
        if (r.RowCount >= 0) rows = r.RowCount;
        else if (r.Interleaved) rows = (rows - r.RowStart + 1) / 2;
        else rows -= r.RowStart;
        return (rows, cols);
    }

    /// <summary>The scheme of a module at <paramref name="bits"/>.</summary>
    public QuantizationScheme Scheme(int bits) => new(bits, _options.GroupSize, _options.Symmetric);

    /// <summary>compressed-tensors stores g_idx with act-order.</summary>
    public bool ActOrderTensors => _options.Recipe.ActOrder;

    /// <summary>Output tensors of one quantized module.</summary>
    public IReadOnlyList<TensorSpec> ModuleSpecs(Entry entry, int bits) =>
        QuantizedModuleWriter.Specs(entry.Prefix, entry.OutFeatures, entry.InFeatures, Scheme(bits), _options.Format, entry.Info.DType, ActOrderTensors);

    private long ModuleBytes(Entry entry, int bits)
    {
        var key = (entry.OutFeatures, entry.InFeatures, entry.Info.DType, bits);
        if (!_moduleBytes.TryGetValue(key, out var bytes))
            _moduleBytes[key] = bytes = ModuleSpecs(entry, bits).Sum(s => s.ByteLength);
        return bytes;
    }

    /// <summary>Bytes of one routed expert (three modules) at <paramref name="bits"/> (all experts have the same shapes);
    /// 0 for fused storage, whose rewritten tensors count in <see cref="FixedBytes"/> (their size does not depend on the width).</summary>
    public long ExpertBytes(int bits)
    {
        long total = 0;
        foreach (var entry in Entries.Where(e => e.Kind == Kind.Expert && e.Layer == Layers[0] && e.Expert == 0))
            total += ModuleBytes(entry, bits);
        return total;
    }

    /// <summary>Bytes that do not depend on the experts' widths: copied tensors, attention / shared-expert modules and
    /// fused expert tensors (rewritten at their own size).</summary>
    public long FixedBytes => Entries.Sum(e => e.Kind switch
    {
        Kind.Copy or Kind.Composite => e.Info.ByteLength,
        Kind.Module => ModuleBytes(e, e.Bits),
        _ => 0,
    });

    /// <summary>Tensor bytes of the output for the given widths (layer → width of each expert).</summary>
    public long OutputBytes(IReadOnlyDictionary<int, int[]> widths) =>
        FixedBytes + Layers.Sum(l => widths[l].Sum(b => ExpertBytes(b)));

    /// <summary>Every output tensor, in the input's order, for the given widths.</summary>
    public IReadOnlyList<TensorSpec> Specs(IReadOnlyDictionary<int, int[]> widths)
    {
        var specs = new List<TensorSpec>(Entries.Count * 2);
        foreach (var e in Entries)
        {
            switch (e.Kind)
            {
                case Kind.Expert: specs.AddRange(ModuleSpecs(e, widths[e.Layer][e.Expert])); break;
                case Kind.Module: specs.AddRange(ModuleSpecs(e, e.Bits)); break;
                default: specs.Add(TensorSpec.From(e.Info)); break;
            }
        }
        return specs;
    }

    /// <summary>Quantized module name → scheme, for quantization_config.</summary>
    public IReadOnlyDictionary<string, QuantizationScheme> QuantizedModules(IReadOnlyDictionary<int, int[]> widths)
    {
        var map = new Dictionary<string, QuantizationScheme>(StringComparer.Ordinal);
        foreach (var e in Entries)
        {
            if (e.Kind == Kind.Expert) map[e.Prefix] = Scheme(widths[e.Layer][e.Expert]);
            else if (e.Kind == Kind.Module) map[e.Prefix] = Scheme(e.Bits);
        }
        return map;
    }

    /// <summary>Every other 2-D float weight (a Linear module left in full precision: routers, lm_head, attention, shared
    /// experts ...), by module name; embeddings and norms are not Linear modules.</summary>
    public IReadOnlyList<string> UnquantizedLinearModules(ModelCheckpoint checkpoint) =>
        Entries.Where(e => e.Kind == Kind.Copy && e.Info.Shape.Length == 2 && IsFloatWeight(e.Info.DType)
                           && e.Name.EndsWith(".weight", StringComparison.Ordinal)
                           && checkpoint.Classify(e.Name).Role is not (TensorRole.Embedding or TensorRole.Norm))
            .Select(e => e.Prefix).ToList();
}
