using static TorchSharp.torch;

namespace MoECompress.Compression.Substitution;

/// <summary>
/// The learned vectors of one MoE layer's compressed experts (He et al. 2025): per routed expert e, c1 [H] scales the
/// gate_proj input, c2 [I] the down_proj input and c3 [H] the up_proj input of the experts that are computed when e is
/// an auxiliary (not computed) expert of a token. Stored as [E, H], [E, I], [E, H]. Owns its tensors.
/// </summary>
public sealed class CompressedExpertVectors : IDisposable
{
    /// <param name="gateInput">c1 of every expert [E, H].</param>
    /// <param name="intermediate">c2 of every expert [E, I].</param>
    /// <param name="upInput">c3 of every expert [E, H].</param>
    /// <param name="aux">Auxiliary experts per token (0 computes the full top-k: the original block).</param>
    public CompressedExpertVectors(Tensor gateInput, Tensor intermediate, Tensor upInput, int aux)
    {
        if (gateInput.dim() != 2 || intermediate.dim() != 2 || upInput.dim() != 2 ||
            !gateInput.shape.SequenceEqual(upInput.shape) || intermediate.shape[0] != gateInput.shape[0])
            throw new ArgumentException(
                $"compressed-expert vectors must be [E, H], [E, I], [E, H]; found [{string.Join(",", gateInput.shape)}], " +
                $"[{string.Join(",", intermediate.shape)}], [{string.Join(",", upInput.shape)}]");
        ArgumentOutOfRangeException.ThrowIfNegative(aux);
        GateInput = gateInput;
        Intermediate = intermediate;
        UpInput = upInput;
        Aux = aux;
    }

    public Tensor GateInput { get; }
    public Tensor Intermediate { get; }
    public Tensor UpInput { get; }
    public int Aux { get; }
    public long NumExperts => GateInput.shape[0];

    /// <summary>Vectors of ones (the initialisation: compressed experts then change nothing but which experts run).</summary>
    public static CompressedExpertVectors Ones(long experts, long hidden, long intermediate, int aux, Device? device = null) =>
        new(ones(experts, hidden, ScalarType.Float32, device), ones(experts, intermediate, ScalarType.Float32, device),
            ones(experts, hidden, ScalarType.Float32, device), aux);

    public void Dispose()
    {
        GateInput.Dispose();
        Intermediate.Dispose();
        UpInput.Dispose();
    }
}
