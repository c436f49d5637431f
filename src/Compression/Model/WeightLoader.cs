using MoECompress.Formats.Errors;
using MoECompress.Formats.Families;
using MoECompress.Formats.Safetensors;
using TorchSharp;
using static TorchSharp.torch;

namespace MoECompress.Compression.Model;

/// <summary>
/// Reads weights for the engine from an <see cref="ITensorSource"/> as float32 tensors detached from any dispose
/// scope: checks shapes against the config, dequantizes FP8 block-scaled weights (<c>*.weight_scale_inv</c>),
/// reads routed experts through the family adapter (<see cref="ExpertWeights"/>), and disposes everything it created
/// when loading fails (<see cref="Abandon"/>).
/// </summary>
internal sealed class WeightLoader : IDisposable
{
    private readonly ITensorSource _source;
    private readonly EngineConfig _config;
    private readonly List<Tensor> _created = new();
    private readonly bool _keepExperts16Bit;

    /// <param name="keepExperts16Bit">Routed-expert matrices stored as bfloat16/float16 keep that type (see <see cref="ModelEngine.HoldExpertsAt16Bit"/>).</param>
    public WeightLoader(ITensorSource source, EngineConfig config, bool keepExperts16Bit = false)
    {
        _source = source;
        _config = config;
        _keepExperts16Bit = keepExperts16Bit;
    }

    public bool Has(string name) => _source.Contains(name);

    /// <summary>A float32 copy of a tensor that must exist and have <paramref name="shape"/>.</summary>
    public Tensor Load(string name, string what, params long[] shape)
    {
        var t = ReadFloat(name, what).DetachFromDisposeScope();
        CheckShape(t, name, what, shape);
        return Track(t);
    }

    /// <summary>
    /// The two row halves [rows, cols] of a fused tensor [2·rows, cols] that must exist (GraniteMoE shared_mlp.input_linear:
    /// gate rows first, then up), as separate float32 tensors.
    /// </summary>
    public (Tensor First, Tensor Second) LoadHalves(string name, string what, long rows, long cols)
    {
        using var fused = ReadFloat(name, what);
        CheckShape(fused, name, what, new[] { 2 * rows, cols });
        var first = Track(fused.narrow(0, 0, rows).clone().DetachFromDisposeScope());
        var second = Track(fused.narrow(0, rows, rows).clone().DetachFromDisposeScope());
        return (first, second);
    }

    /// <summary>Like <see cref="Load"/>, but null when the tensor is absent.</summary>
    public Tensor? TryLoad(string name, string what, params long[] shape) => Has(name) ? Load(name, what, shape) : null;

    /// <summary>
    /// The [out, in] matrix (and bias, when the family has expert biases) of one projection of a routed expert, read
    /// through <see cref="ExpertWeights"/> (per-expert, fused, transposed, MXFP4 and FP8 layouts; fused tensors are
    /// read one expert slab at a time).
    /// </summary>
    public (Tensor Weight, Tensor? Bias) LoadExpert(IMoEFamily family, MoEConfig moe, int layer, int expert,
        ExpertProjection projection, string what, long[] shape)
    {
        var r = family.ExpertTensor(layer, expert, projection, moe);
        foreach (var name in new[] { r.TensorName, r.BiasName, r.ScalesName })
            if (name is not null && !_source.Contains(name))
                throw new MoeCompressException(ErrorKind.InvalidCheckpoint, $"tensor '{name}' ({what}) is missing from the checkpoint");
        Tensor w;
        Tensor? b;
        try
        {
            w = ExpertWeights.Load(_source, family, moe, layer, expert, projection, _keepExperts16Bit).DetachFromDisposeScope();
            CheckShape(w, r.TensorName, what, shape);
            Track(w);
            b = ExpertWeights.LoadBias(_source, family, moe, layer, expert, projection)?.DetachFromDisposeScope();
        }
        catch (Exception ex) when (ex is ArgumentException or KeyNotFoundException)
        {
            throw new MoeCompressException(ErrorKind.InvalidCheckpoint, $"tensor '{r.TensorName}' ({what}): {ex.Message}", ex);
        }
        if (b is not null)
        {
            CheckShape(b, r.BiasName!, what + " bias", new[] { shape[0] });
            Track(b);
        }
        return (w, b);
    }

    /// <summary>Reads a tensor as float32 (in the caller's dispose scope), applying FP8 block scales when a weight_scale_inv companion exists.</summary>
    private Tensor ReadFloat(string name, string what)
    {
        if (!_source.Contains(name))
            throw new MoeCompressException(ErrorKind.InvalidCheckpoint, $"tensor '{name}' ({what}) is missing from the checkpoint");
        var info = _source.GetInfo(name);
        Tensor t;
        using (var scope = NewDisposeScope())
        {
            t = _source.ToTensor(name, ScalarType.Float32);
            if (t.dtype != ScalarType.Float32) t = t.to(ScalarType.Float32);
            var scaleName = name + "_scale_inv";
            if (info.DType is SafetensorsDType.F8_E4M3 or SafetensorsDType.F8_E5M2 && t.dim() == 2 && _source.Contains(scaleName))
                t = ApplyBlockScale(t, _source.ToTensor(scaleName, ScalarType.Float32), scaleName);
            t = t.MoveToOuterDisposeScope();
        }
        return t;
    }

    private Tensor ApplyBlockScale(Tensor w, Tensor scale, string scaleName)
    {
        long br = _config.Fp8BlockSize[0], bc = _config.Fp8BlockSize[1];
        var rows = w.shape[0];
        var cols = w.shape[1];
        var expected = new[] { (rows + br - 1) / br, (cols + bc - 1) / bc };
        if (scale.dim() != 2 || scale.shape[0] != expected[0] || scale.shape[1] != expected[1])
            throw new MoeCompressException(ErrorKind.InvalidCheckpoint,
                $"tensor '{scaleName}' has shape [{string.Join(", ", scale.shape)}], expected [{string.Join(", ", expected)}] for {br}x{bc} blocks");
        var full = scale.repeat_interleave(br, 0).repeat_interleave(bc, 1).narrow(0, 0, rows).narrow(1, 0, cols);
        return w * full;
    }

    private static void CheckShape(Tensor t, string name, string what, long[] shape)
    {
        if (shape.Length > 0 && !t.shape.SequenceEqual(shape))
        {
            var actual = t.shape;
            t.Dispose();
            throw ShapeError(name, what, actual, shape);
        }
    }

    private static MoeCompressException ShapeError(string name, string what, long[] actual, long[] expected) =>
        new(ErrorKind.InvalidConfig,
            $"tensor '{name}' ({what}) has shape [{string.Join(", ", actual)}], but config.json implies [{string.Join(", ", expected)}]");

    private Tensor Track(Tensor t)
    {
        _created.Add(t);
        return t;
    }

    /// <summary>Swaps a tracked tensor for a derived one (e.g. a dtype conversion), disposing the old one.</summary>
    public Tensor Replace(Tensor old, Tensor replacement)
    {
        replacement = replacement.DetachFromDisposeScope();
        _created.Remove(old);
        old.Dispose();
        return Track(replacement);
    }

    /// <summary>Tracks a tensor derived during loading (disposed by <see cref="Abandon"/> if loading fails).</summary>
    public Tensor Adopt(Tensor derived) => Track(derived.DetachFromDisposeScope());

    /// <summary>Loading succeeded: the created tensors now belong to the caller.</summary>
    public void Commit() => _created.Clear();

    /// <summary>Loading failed: disposes every tensor created so far.</summary>
    public void Abandon()
    {
        foreach (var t in _created) t.Dispose();
        _created.Clear();
    }

    /// <summary>Forgets tensors not committed (call <see cref="Abandon"/> first to dispose them).</summary>
    public void Dispose() => _created.Clear();
}
