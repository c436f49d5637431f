using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace MoECompress.Compression.Merging;

/// <summary>
/// Permutation alignment of two gated MLPs' intermediate neurons before their weights are averaged (MC-SMoE; "weight
/// matching" of Git Re-Basin). Reordering an expert's intermediate neurons — rows of gate_proj and up_proj, columns of
/// down_proj, all with one permutation — leaves its function unchanged, but experts trained independently hold their
/// neurons in unrelated orders, so averaging them unaligned mixes unrelated neurons. The permutation chosen maximises
/// Σ_a ⟨gate_ref[a], gate[π(a)]⟩ + ⟨up_ref[a], up[π(a)]⟩ + ⟨down_ref[:, a], down[:, π(a)]⟩
/// (<see cref="LinearAssignment"/>).
/// </summary>
public static class NeuronAlignment
{
    /// <summary>
    /// π with π[a] = the neuron of the member that goes to position a, for gate/up [I, H] and down [H, I] float32 weights.
    /// </summary>
    public static int[] Permutation(Tensor referenceGate, Tensor referenceUp, Tensor referenceDown, Tensor gate, Tensor up, Tensor down)
    {
        using var scope = NewDisposeScope();
        var n = (int)referenceGate.shape[0];
        if (gate.shape[0] != n || referenceDown.shape[1] != n || down.shape[1] != n)
            throw new ArgumentException("the experts' intermediate sizes differ");
        if ((long)n * n > int.MaxValue) throw new ArgumentException($"intermediate size {n}: the {n}x{n} alignment score is too large");
        // The n × n score in float64 (1.6 GB at Mixtral's I = 14336), a tensor so that it is freed as soon as the permutation
        // is known (a managed array of that size lingers until a full collection, one per merged member), built a block of
        // rows and columns at a time so that no float64 copy of a whole weight matrix is held.
        var score = empty([n, n], ScalarType.Float64);
        var block = Math.Max(1, Math.Min(n, 2048));
        for (var r0 = 0; r0 < n; r0 += block)
        {
            var rows = Math.Min(block, n - r0);
            using var rowScope = NewDisposeScope();
            var rg = referenceGate.narrow(0, r0, rows).to(ScalarType.Float64);
            var ru = referenceUp.narrow(0, r0, rows).to(ScalarType.Float64);
            var rd = referenceDown.narrow(1, r0, rows).to(ScalarType.Float64).t();
            for (var c0 = 0; c0 < n; c0 += block)
            {
                var cols = Math.Min(block, n - c0);
                using var blockScope = NewDisposeScope();
                var part = rg.matmul(gate.narrow(0, c0, cols).to(ScalarType.Float64).t());
                part.Plus_(ru.matmul(up.narrow(0, c0, cols).to(ScalarType.Float64).t()));
                part.Plus_(rd.matmul(down.narrow(1, c0, cols).to(ScalarType.Float64)));
                score.narrow(0, r0, rows).narrow(1, c0, cols).copy_(part);
            }
        }
        // Read in place when the matrix fits one span of bytes (n ≤ 16383); larger ones are copied out.
        return (long)n * n * sizeof(double) <= int.MaxValue
            ? LinearAssignment.Maximize(MemoryMarshal.Cast<byte, double>(score.bytes), n)
            : LinearAssignment.Maximize(score.data<double>().ToArray(), n);
    }

    /// <summary>Applies π to an expert: gate/up rows and down columns reordered (new tensors).</summary>
    public static (Tensor Gate, Tensor Up, Tensor Down) Apply(int[] permutation, Tensor gate, Tensor up, Tensor down)
    {
        using var scope = NewDisposeScope();
        var index = tensor(permutation.Select(i => (long)i).ToArray(), ScalarType.Int64);
        return (gate.index_select(0, index).MoveToOuterDisposeScope(), up.index_select(0, index).MoveToOuterDisposeScope(),
            down.index_select(1, index).MoveToOuterDisposeScope());
    }

    /// <summary>Applies π to a down_proj input Hessian [I, I]: H[π][:, π] (a new tensor).</summary>
    public static Tensor ApplyToHessian(int[] permutation, Tensor hessian)
    {
        using var scope = NewDisposeScope();
        var index = tensor(permutation.Select(i => (long)i).ToArray(), ScalarType.Int64);
        return hessian.index_select(0, index).index_select(1, index).MoveToOuterDisposeScope();
    }
}
