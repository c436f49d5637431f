using static TorchSharp.torch;

namespace MoECompress.Compression.Calibration;

/// <summary>
/// Input Hessians (un-normalised second moments) of one routed expert's projections over the calibration tokens routed
/// to it in one layer pass — Σ x xᵀ and/or Σ g·x xᵀ for gate_proj/up_proj (x [H]), Σ h hᵀ and/or Σ g·h hᵀ for down_proj
/// (h [I]) — as float32 tensors owned by this object (dispose it). They exist only while the layer they belong to is
/// being compressed (<see cref="LayerHessianCollector"/>); profiles never store them. GPTQ's H = 2/N · Σ x xᵀ is
/// <c>2 / <see cref="Tokens"/></c> times <see cref="HessianKind.Input"/>. An expert that received no token has all-zero
/// matrices and <see cref="Tokens"/> 0.
/// </summary>
public sealed class ExpertHessians : IDisposable
{
    private readonly Dictionary<HessianKind, Tensor> _matrices;

    /// <summary>Takes ownership of <paramref name="matrices"/> (each [n, n], float32).</summary>
    public ExpertHessians(int expert, long tokens, double gateWeightSum, IReadOnlyDictionary<HessianKind, Tensor> matrices)
    {
        ArgumentNullException.ThrowIfNull(matrices);
        foreach (var (kind, m) in matrices)
            if (m.dim() != 2 || m.shape[0] != m.shape[1])
                throw new ArgumentException($"expert {expert}: the {kind} Hessian must be square, found [{string.Join(", ", m.shape)}]");
        Expert = expert;
        Tokens = tokens;
        GateWeightSum = gateWeightSum;
        _matrices = new Dictionary<HessianKind, Tensor>(matrices);
    }

    /// <summary>The expert's index in its layer.</summary>
    public int Expert { get; }
    /// <summary>Tokens summed (the expert's routed tokens in this pass).</summary>
    public long Tokens { get; }
    /// <summary>Σ g over the routed tokens (normaliser of the weighted sums).</summary>
    public double GateWeightSum { get; }
    /// <summary>The kinds held.</summary>
    public IReadOnlyCollection<HessianKind> Kinds => _matrices.Keys;

    /// <summary>True when <paramref name="kind"/> was collected.</summary>
    public bool Has(HessianKind kind) => _matrices.ContainsKey(kind);

    /// <summary>The matrix of one kind [n, n] (owned by this object: do not dispose it).</summary>
    public Tensor Matrix(HessianKind kind) => _matrices.TryGetValue(kind, out var m) ? m
        : throw new InvalidOperationException($"expert {Expert}: the {kind} Hessian was not collected");

    /// <summary>Side length of one matrix.</summary>
    public long Size(HessianKind kind) => Matrix(kind).shape[0];

    /// <summary>Bytes of the float32 matrices of one expert for <paramref name="kinds"/>.</summary>
    public static long Bytes(long hiddenSize, long intermediateSize, IEnumerable<HessianKind> kinds) =>
        kinds.Sum(k => (IsInput(k) ? hiddenSize * hiddenSize : intermediateSize * intermediateSize) * sizeof(float));

    /// <summary>True for the gate/up (input x) kinds.</summary>
    public static bool IsInput(HessianKind kind) => kind is HessianKind.Input or HessianKind.InputWeighted;

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var m in _matrices.Values) m.Dispose();
        _matrices.Clear();
    }
}
