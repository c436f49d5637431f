using System.Diagnostics;
using MoECompress.Compression.Calibration;
using MoECompress.Compression.Model;
using MoECompress.Compression.Surgery;
using MoECompress.Formats.Families;
using TorchSharp;
using static TorchSharp.torch;

namespace MoECompress.Compression.Merging;

/// <summary>
/// The merged experts of a merge plan, computed one MoE layer at a time: the first request for a layer loads its
/// members' weights from the checkpoint, merges every cluster of more than one expert (gate, up and down) and frees the
/// layer held before, so at most one layer's merged experts are in memory. With a cache folder each computed layer is
/// also written there (raw values in the experts' storage dtype when that is bf16 or f16, which is what the output gets
/// anyway, else float32), so that a second pass over the layers (the router-row measurement, then the write) reads
/// instead of recomputing: worth it for SVD merges, whose cache is about the size of the merged experts in the output.
/// </summary>
public sealed class MergedExpertWeights : IMergedExpertWeights, IDisposable
{
    private static readonly ExpertProjection[] Projections = [ExpertProjection.Gate, ExpertProjection.Up, ExpertProjection.Down];

    private readonly ModelCheckpoint _checkpoint;
    private readonly IReadOnlyDictionary<int, IReadOnlyList<ExpertCluster>> _layers;
    private readonly ExpertMergeSettings _settings;
    private readonly string? _cacheDirectory;
    private readonly IProgress<string>? _progress;
    private readonly Dictionary<(int Layer, int Expert), IReadOnlyDictionary<ExpertProjection, ProjectionMergeStatistics>> _statistics = new();
    private readonly HashSet<int> _cached = new();
    private ScalarType? _cacheType;
    private Dictionary<(int Expert, ExpertProjection Projection), Tensor>? _held;
    private int _heldLayer = -1;
    private readonly bool _keepCache;

    /// <param name="checkpoint">The input model (kept open by the caller while this object is used).</param>
    /// <param name="layers">Routed layer → its clusters in output order.</param>
    /// <param name="settings">The merge arithmetic.</param>
    /// <param name="cacheDirectory">A folder to keep computed layers in (created when needed, deleted by <see cref="Dispose"/>
    /// unless <paramref name="keepCache"/>), or null.</param>
    /// <param name="progress">Receives one line per computed layer.</param>
    /// <param name="keepCache">Leave the cache folder to its owner (a resume journal) instead of deleting it on dispose.</param>
    public MergedExpertWeights(ModelCheckpoint checkpoint, IReadOnlyDictionary<int, IReadOnlyList<ExpertCluster>> layers,
        ExpertMergeSettings settings, string? cacheDirectory = null, IProgress<string>? progress = null, bool keepCache = false)
    {
        _keepCache = keepCache;
        _checkpoint = checkpoint ?? throw new ArgumentNullException(nameof(checkpoint));
        _layers = layers ?? throw new ArgumentNullException(nameof(layers));
        _settings = settings ?? throw new ArgumentNullException(nameof(settings));
        _cacheDirectory = cacheDirectory;
        _progress = progress;
    }

    /// <summary>What was kept for each merged projection computed so far, by (layer, output expert).</summary>
    public IReadOnlyDictionary<(int Layer, int Expert), IReadOnlyDictionary<ExpertProjection, ProjectionMergeStatistics>> Statistics => _statistics;

    /// <summary>Time spent computing merged weights (not reading them back from the cache).</summary>
    public TimeSpan ComputeTime { get; private set; }

    /// <summary>Layers computed (each counted once, however often it was read back).</summary>
    public int LayersComputed { get; private set; }

    /// <inheritdoc />
    public Tensor Weight(int layer, int outputExpert, ExpertProjection projection)
    {
        var held = Layer(layer);
        if (!held.TryGetValue((outputExpert, projection), out var t))
            throw new ArgumentException($"layer {layer}: output expert {outputExpert} {projection} is not a merged expert of this plan");
        return t.clone();
    }

    /// <summary>
    /// The merged weights of one layer, (output expert, projection) → float32 [out, in], owned by this object and valid
    /// until another layer is requested or this object is disposed.
    /// </summary>
    public IReadOnlyDictionary<(int Expert, ExpertProjection Projection), Tensor> Layer(int layer)
    {
        if (_heldLayer == layer && _held is not null) return _held;
        if (!_layers.TryGetValue(layer, out var clusters))
            throw new ArgumentException($"layer {layer} is not part of this merge plan", nameof(layer));
        Release();
        _held = _cached.Contains(layer) ? ReadCache(layer, clusters) : Compute(layer, clusters, null);
        _heldLayer = layer;
        return _held;
    }

    /// <summary>
    /// Merges layer <paramref name="layer"/> whitened by <paramref name="hessians"/> (its merged members' plain input
    /// Hessians, collected while the layer ran: see <see cref="LayerHessianCollector"/>) and keeps the result in the cache
    /// folder only, so the Hessians can be freed before the next layer. Needs a cache folder.
    /// </summary>
    public void Precompute(int layer, IReadOnlyDictionary<int, ExpertHessians> hessians)
    {
        ArgumentNullException.ThrowIfNull(hessians);
        if (_cacheDirectory is null) throw new InvalidOperationException("precomputing merged layers needs a cache folder");
        if (!_layers.TryGetValue(layer, out var clusters))
            throw new ArgumentException($"layer {layer} is not part of this merge plan", nameof(layer));
        if (_heldLayer == layer) Release();
        var computed = Compute(layer, clusters, hessians);
        foreach (var t in computed.Values) t.Dispose();
    }

    /// <summary>
    /// Takes over a layer an interrupted run computed: its merge statistics and, with a cache folder (the interrupted run's,
    /// kept by its journal), its merged weights there; without one they are recomputed, identically, when first requested.
    /// </summary>
    internal void Restore(int layer, IReadOnlyDictionary<int, IReadOnlyDictionary<ExpertProjection, ProjectionMergeStatistics>> statistics)
    {
        if (!_layers.ContainsKey(layer)) throw new ArgumentException($"layer {layer} is not part of this merge plan", nameof(layer));
        foreach (var (k, stats) in statistics) _statistics[(layer, k)] = stats;
        if (_cacheDirectory is not null) _cached.Add(layer);
    }

    /// <summary>The experts of <paramref name="layer"/> that belong to a merged cluster.</summary>
    public IReadOnlyList<int> MergedMembers(int layer) =>
        _layers.TryGetValue(layer, out var clusters) ? clusters.Where(c => c.IsMerged).SelectMany(c => c.Members).Order().ToList() : [];

    private Dictionary<(int, ExpertProjection), Tensor> Compute(int layer, IReadOnlyList<ExpertCluster> clusters,
        IReadOnlyDictionary<int, ExpertHessians>? hessians)
    {
        var clock = Stopwatch.StartNew();
        var result = new Dictionary<(int, ExpertProjection), Tensor>();
        if (!_settings.Whiten) hessians = null;
        try
        {
            for (var k = 0; k < clusters.Count; k++)
            {
                var c = clusters[k];
                if (!c.IsMerged) continue;
                _statistics[(layer, k)] = MergeCluster(layer, k, c, hessians, result);
                NativeHeap.Trim(); // the cluster's member copies and alignment scores, freed
            }
        }
        catch
        {
            foreach (var t in result.Values) t.Dispose();
            throw;
        }
        ComputeTime += clock.Elapsed;
        LayersComputed++;
        _progress?.Report($"layer {layer}: merged {clusters.Count(c => c.IsMerged)} cluster(s) " +
                          $"({_settings.Method.ToString().ToLowerInvariant()}{(_settings.Align ? ", aligned" : "")}) in {clock.Elapsed.TotalSeconds:F1} s");
        if (_cacheDirectory is not null) WriteCache(layer, result);
        return result;
    }

    /// <summary>
    /// Merges one cluster's gate, up and down into <paramref name="result"/> under (output expert <paramref name="k"/>,
    /// projection) and returns what was kept per projection. The members are held in their stored 16-bit type when they
    /// have one (half the memory: at Mixtral's widths a member is 352 MB instead of 704 MB; widening is exact, so the
    /// merge is unchanged); with alignment each member's neurons are reordered to match the representative's and the
    /// unaligned copy is freed at once.
    /// </summary>
    private Dictionary<ExpertProjection, ProjectionMergeStatistics> MergeCluster(int layer, int k, ExpertCluster c,
        IReadOnlyDictionary<int, ExpertHessians>? hessians, Dictionary<(int, ExpertProjection), Tensor> result)
    {
        using var scope = NewDisposeScope();
        var members = c.Members.ToDictionary(e => e,
            e => Projections.Select(p => _checkpoint.LoadExpert(layer, e, p, keep16Bit: true)).ToArray());
        var permutations = new Dictionary<int, int[]>();
        if (_settings.Align)
        {
            var r = members[c.Representative];
            foreach (var e in c.Members.Where(e => e != c.Representative))
            {
                var m = members[e];
                var pi = NeuronAlignment.Permutation(r[0], r[1], r[2], m[0], m[1], m[2]);
                var (g, u, d) = NeuronAlignment.Apply(pi, m[0], m[1], m[2]);
                foreach (var t in m) t.Dispose();
                members[e] = [g, u, d];
                permutations[e] = pi;
            }
        }
        var stats = new Dictionary<ExpertProjection, ProjectionMergeStatistics>();
        for (var pj = 0; pj < Projections.Length; pj++)
        {
            var projection = Projections[pj];
            Tensor merged;
            if (_settings.Method == MergeMethod.Average)
            {
                merged = ExpertWeightMerge.WeightedAverage(c.Members.Select(e => members[e][pj]).ToList(), c.Weights);
                var full = (int)Math.Min(merged.shape[0], merged.shape[1] * c.Members.Count);
                stats[projection] = new ProjectionMergeStatistics(full, full, 1.0, false);
            }
            else
            {
                var weights = c.Members.Select(e => members[e][pj].to(ScalarType.Float32)).ToList();
                var hessian = hessians is null ? null : SummedHessian(hessians, c.Members, projection, permutations);
                var (w, s) = ExpertWeightMerge.Subspace(weights, c.Weights, _settings.Rank,
                    _settings.Rank is null ? _settings.Energy : null, hessian, _settings.Damping);
                merged = w;
                stats[projection] = s;
            }
            result[(k, projection)] = merged.DetachFromDisposeScope();
        }
        return stats;
    }

    /// <summary>
    /// Σ over members of the plain input Hessian of the projection (Input for gate/up, Down for down_proj), float64; a
    /// member's down_proj Hessian is reordered with its alignment permutation, like its neurons.
    /// </summary>
    private static Tensor SummedHessian(IReadOnlyDictionary<int, ExpertHessians> hessians, IReadOnlyList<int> members, ExpertProjection projection,
        IReadOnlyDictionary<int, int[]> permutations)
    {
        var kind = projection == ExpertProjection.Down ? HessianKind.Down : HessianKind.Input;
        var sum = (Tensor?)null;
        foreach (var m in members)
        {
            var h = hessians[m].Matrix(kind);
            using var aligned = kind == HessianKind.Down && permutations.TryGetValue(m, out var pi) ? NeuronAlignment.ApplyToHessian(pi, h) : h.alias();
            if (sum is null) sum = aligned.to(ScalarType.Float64);
            else sum.Plus_(aligned.to(ScalarType.Float64));
        }
        return sum!;
    }

    private string CachePath(int layer, int expert, ExpertProjection projection) =>
        Path.Combine(_cacheDirectory!, $"layer{layer}-expert{expert}-{projection.ToString().ToLowerInvariant()}.f32");

    /// <summary>bf16/f16 when the checkpoint stores its experts so (merged weights are written in that dtype), else float32.</summary>
    private ScalarType CacheType(int layer)
    {
        if (_cacheType is { } known) return known;
        var r = _checkpoint.Family.ExpertTensor(layer, 0, ExpertProjection.Gate, _checkpoint.MoE);
        _cacheType = _checkpoint.Tensors.GetInfo(r.TensorName).DType switch
        {
            Formats.Safetensors.SafetensorsDType.BF16 => ScalarType.BFloat16,
            Formats.Safetensors.SafetensorsDType.F16 => ScalarType.Float16,
            _ => ScalarType.Float32,
        };
        return _cacheType.Value;
    }

    private void WriteCache(int layer, Dictionary<(int, ExpertProjection), Tensor> tensors)
    {
        Directory.CreateDirectory(_cacheDirectory!);
        var type = CacheType(layer);
        foreach (var ((k, p), t) in tensors)
        {
            using var stored = t.dtype == type ? t.clone() : t.to(type);
            using var stream = new FileStream(CachePath(layer, k, p), FileMode.Create, FileAccess.Write, FileShare.None);
            stream.Write(stored.bytes);
        }
        _cached.Add(layer);
    }

    private Dictionary<(int, ExpertProjection), Tensor> ReadCache(int layer, IReadOnlyList<ExpertCluster> clusters)
    {
        var result = new Dictionary<(int, ExpertProjection), Tensor>();
        long h = _checkpoint.MoE.HiddenSize, inter = _checkpoint.MoE.ExpertIntermediateSize;
        for (var k = 0; k < clusters.Count; k++)
        {
            if (!clusters[k].IsMerged) continue;
            foreach (var p in Projections)
            {
                var path = CachePath(layer, k, p);
                var shape = p == ExpertProjection.Down ? new[] { h, inter } : new[] { inter, h };
                using var stored = empty(shape, CacheType(layer));
                using (var stream = File.OpenRead(path))
                {
                    if (stream.Length != stored.NumberOfElements * stored.ElementSize)
                        throw new IOException($"{path}: merge cache holds {stream.Length} bytes, expected {stored.NumberOfElements * stored.ElementSize}");
                    stream.ReadExactly(stored.bytes);
                }
                result[(k, p)] = (stored.dtype == ScalarType.Float32 ? stored.clone() : stored.to(ScalarType.Float32)).DetachFromDisposeScope();
            }
        }
        return result;
    }

    private void Release()
    {
        if (_held is not null)
            foreach (var t in _held.Values) t.Dispose();
        _held = null;
        _heldLayer = -1;
    }

    /// <summary>Frees the layer held and deletes the cache folder.</summary>
    public void Dispose()
    {
        Release();
        if (_cacheDirectory is not null && !_keepCache && Directory.Exists(_cacheDirectory))
        {
            try { Directory.Delete(_cacheDirectory, recursive: true); }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
    }
}
