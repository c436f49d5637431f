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
        // The n × n score in float64, built a block of rows at a time straight into the array the assignment reads: at
        // Mixtral's I = 14336 the whole matrix is 1.6 GB, and holding its three products and the float64 weights at once
        // would take several times that.
        var score = new double[(long)n * n];
        var g = gate.to(ScalarType.Float64);
        var u = up.to(ScalarType.Float64);
        var d = down.to(ScalarType.Float64);
        var block = Math.Max(1, (int)Math.Min(n, (16L << 20) / n)); // rows per block: about 128 MB of float64
        for (var r0 = 0; r0 < n; r0 += block)
        {
            using var blockScope = NewDisposeScope();
            var rows = Math.Min(block, n - r0);
            var part = referenceGate.narrow(0, r0, rows).to(ScalarType.Float64).matmul(g.t());
            part.add_(referenceUp.narrow(0, r0, rows).to(ScalarType.Float64).matmul(u.t()));
            part.add_(referenceDown.narrow(1, r0, rows).to(ScalarType.Float64).t().matmul(d));
            part.contiguous().data<double>().CopyTo(score, checked(r0 * n), 0);
        }
        return LinearAssignment.Maximize(score, n);
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
