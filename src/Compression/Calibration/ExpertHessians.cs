using static TorchSharp.torch;

namespace MoECompress.Compression.Calibration;

/// <summary>
/// Input Hessians (un-normalised second moments) of one routed expert's projections, gathered over the calibration
/// tokens routed to it: Σ x xᵀ and Σ g·x xᵀ for gate_proj/up_proj (x [H]), Σ h hᵀ and Σ g·h hᵀ for down_proj
/// (h [I]). Each micro-batch's product is computed in float32, the sums over micro-batches in float64, and the result
/// is kept as float32 (row-major). GPTQ's H = 2/N · Σ x xᵀ is
/// <c>2 / <see cref="Tokens"/></c> times <see cref="HessianKind.Input"/>; the gate-weighted sums normalise by
/// <see cref="GateWeightSum"/>. An expert that received no token has all-zero matrices and <see cref="Tokens"/> 0.
/// </summary>
public sealed class ExpertHessians
{
    /// <summary>Creates the record; every matrix must have the stated size.</summary>
    public ExpertHessians(int hiddenSize, int intermediateSize, long tokens, double gateWeightSum,
        float[] input, float[] inputWeighted, float[] down, float[] downWeighted)
    {
        if (input.Length != (long)hiddenSize * hiddenSize || inputWeighted.Length != input.Length)
            throw new ArgumentException($"input Hessians must hold {hiddenSize}x{hiddenSize} values");
        if (down.Length != (long)intermediateSize * intermediateSize || downWeighted.Length != down.Length)
            throw new ArgumentException($"down_proj Hessians must hold {intermediateSize}x{intermediateSize} values");
        HiddenSize = hiddenSize;
        IntermediateSize = intermediateSize;
        Tokens = tokens;
        GateWeightSum = gateWeightSum;
        Input = input;
        InputWeighted = inputWeighted;
        Down = down;
        DownWeighted = downWeighted;
    }

    /// <summary>H: size of x.</summary>
    public int HiddenSize { get; }
    /// <summary>I: size of the down_proj input.</summary>
    public int IntermediateSize { get; }
    /// <summary>Tokens summed (the expert's routed tokens).</summary>
    public long Tokens { get; }
    /// <summary>Σ g over the routed tokens (normaliser of the weighted sums).</summary>
    public double GateWeightSum { get; }
    /// <summary>Σ x xᵀ [H·H], row-major.</summary>
    public float[] Input { get; }
    /// <summary>Σ g·x xᵀ [H·H], row-major.</summary>
    public float[] InputWeighted { get; }
    /// <summary>Σ h hᵀ [I·I], row-major.</summary>
    public float[] Down { get; }
    /// <summary>Σ g·h hᵀ [I·I], row-major.</summary>
    public float[] DownWeighted { get; }

    /// <summary>The values of one matrix.</summary>
    public float[] Values(HessianKind kind) => kind switch
    {
        HessianKind.Input => Input,
        HessianKind.InputWeighted => InputWeighted,
        HessianKind.Down => Down,
        HessianKind.DownWeighted => DownWeighted,
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, null),
    };

    /// <summary>Side length of one matrix (H for the input kinds, I for the down kinds).</summary>
    public int Size(HessianKind kind) => kind is HessianKind.Input or HessianKind.InputWeighted ? HiddenSize : IntermediateSize;

    /// <summary>A new float32 tensor [n, n] holding a copy of one matrix (the caller disposes it).</summary>
    public Tensor ToTensor(HessianKind kind)
    {
        var n = Size(kind);
        return tensor(Values(kind), new long[] { n, n }, ScalarType.Float32);
    }
}
