using TorchSharp;
using static TorchSharp.torch;

namespace MoECompress.Compression.Merging;

/// <summary>
/// The arithmetic of merging the same projection of several experts (float32 [out, in] matrices W_1 … W_n with
/// merge weights f_1 … f_n, normalised here to sum to 1):
/// <list type="bullet">
/// <item><see cref="WeightedAverage"/> (HC-SMoE): Σ f_i W_i.</item>
/// <item><see cref="Subspace"/> (Sub-MoE): one SVD of the concatenation [W_1 | … | W_n] = U Σ [V_1ᵀ | … | V_nᵀ]
/// (a basis U of the output space shared by every member, one right factor per member), V̄ = Σ f_i V_i, and the expert
/// rebuilt as U_r Σ_r V̄_rᵀ from the first r singular directions. With every direction kept this is exactly
/// Σ f_i W_i; truncation keeps the output directions the members use most. Optional whitening runs the SVD on
/// W_i·L instead (L Lᵀ = the members' summed, damped input Hessian Σ x xᵀ), so that the kept directions are those that
/// matter most for the actual inputs, and maps the result back with L⁻¹.</item>
/// </list>
/// </summary>
public static class ExpertWeightMerge
{
    /// <summary>Concatenations up to this many elements are decomposed in float64, larger ones in float32.</summary>
    public const long Float64SvdElements = 1L << 22;

    /// <summary>Σ f_i W_i with f normalised to sum to 1 (uniform when all are zero). Returns a new float32 tensor.</summary>
    public static Tensor WeightedAverage(IReadOnlyList<Tensor> weights, IReadOnlyList<double> coefficients)
    {
        var f = Normalize(weights, coefficients);
        using var scope = NewDisposeScope();
        var sum = zeros(weights[0].shape, ScalarType.Float64);
        for (var i = 0; i < weights.Count; i++) sum.AddScaled_(weights[i].to(ScalarType.Float64), f[i]);
        return sum.to(ScalarType.Float32).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The Sub-MoE subspace merge of one projection. Keep the first <paramref name="rank"/> singular directions, or the
    /// fewest whose energy Σσ² reaches <paramref name="energy"/> of the total, or (both null) all of them.
    /// </summary>
    /// <param name="weights">Member weights, float32 [out, in], all of one shape.</param>
    /// <param name="coefficients">Merge weights (normalised here).</param>
    /// <param name="rank">Directions to keep (≥ 1), or null.</param>
    /// <param name="energy">Energy fraction to keep (0 &lt; e ≤ 1), or null.</param>
    /// <param name="hessian">Summed input Hessian [in, in] of the members for whitening, or null.</param>
    /// <param name="damping">Added to the Hessian's diagonal as a fraction of its mean diagonal before the Cholesky factorisation.</param>
    /// <returns>A new float32 [out, in] tensor and what was kept.</returns>
    public static (Tensor Weight, ProjectionMergeStatistics Statistics) Subspace(IReadOnlyList<Tensor> weights, IReadOnlyList<double> coefficients,
        int? rank = null, double? energy = null, Tensor? hessian = null, double damping = 0.01)
    {
        var f = Normalize(weights, coefficients);
        if (rank is < 1) throw new ArgumentOutOfRangeException(nameof(rank), rank, "must be at least 1");
        if (energy is { } e0 && !(e0 > 0 && e0 <= 1)) throw new ArgumentOutOfRangeException(nameof(energy), energy, "must be in (0, 1]");
        if (rank is not null && energy is not null) throw new ArgumentException("give a rank or an energy, not both");
        long rows = weights[0].shape[0], cols = weights[0].shape[1];
        var n = weights.Count;

        using var scope = NewDisposeScope();
        var cholesky = hessian is null ? null : WhiteningFactor(hessian, cols, damping);
        var dtype = rows * cols * n <= Float64SvdElements ? ScalarType.Float64 : ScalarType.Float32;
        var blocks = new Tensor[n];
        for (var i = 0; i < n; i++)
        {
            var w = weights[i].to(ScalarType.Float64);
            blocks[i] = (cholesky is null ? w : w.matmul(cholesky)).to(dtype);
        }
        var concat = cat(blocks, 1);
        var (u, s, vh) = linalg.svd(concat, fullMatrices: false);
        var available = (int)s.shape[0];
        var sigma = s.to(ScalarType.Float64).data<double>().ToArray();
        var energies = sigma.Select(x => x * x).ToArray();
        var total = energies.Sum();

        var keep = available;
        if (rank is { } r) keep = Math.Min(r, available);
        else if (energy is { } e && e < 1 && total > 0)
        {
            var cumulative = 0.0;
            for (var k = 0; k < available; k++)
            {
                cumulative += energies[k];
                if (cumulative >= e * total * (1 - 1e-12))
                {
                    keep = k + 1;
                    break;
                }
            }
        }
        var kept = total > 0 ? energies.Take(keep).Sum() / total : 1.0;

        // V̄ᵀ = Σ f_i V_iᵀ, the members' column blocks of Vᵀ averaged with the merge weights.
        var vbar = zeros(new long[] { available, cols }, vh.dtype);
        for (var i = 0; i < n; i++) vbar.AddScaled_(vh.narrow(1, i * cols, cols), f[i]);
        var merged = (u.narrow(1, 0, keep) * s.narrow(0, 0, keep).unsqueeze(0)).matmul(vbar.narrow(0, 0, keep)).to(ScalarType.Float64);
        if (cholesky is not null)
            merged = linalg.solve_triangular(cholesky, merged, upper: false, left: false); // X·L = M  ⇒  X = M·L⁻¹
        var result = merged.to(ScalarType.Float32).contiguous().MoveToOuterDisposeScope();
        return (result, new ProjectionMergeStatistics(keep, available, kept, cholesky is not null));
    }

    /// <summary>
    /// The lower Cholesky factor L (float64) of H + λ·mean(diag H)·I, with λ raised tenfold up to four times when the
    /// factorisation fails; null when H has no positive diagonal (no token reached the members: nothing to whiten by).
    /// </summary>
    public static Tensor? WhiteningFactor(Tensor hessian, long size, double damping = 0.01)
    {
        if (hessian.dim() != 2 || hessian.shape[0] != size || hessian.shape[1] != size)
            throw new ArgumentException($"the Hessian must be [{size}, {size}], found [{string.Join(", ", hessian.shape)}]", nameof(hessian));
        if (!(damping >= 0)) throw new ArgumentOutOfRangeException(nameof(damping), damping, "must not be negative");
        using var scope = NewDisposeScope();
        var h = hessian.to(ScalarType.Float64);
        h = h.Plus(h.t()).Times(0.5);
        var meanDiag = h.diagonal().mean().item<double>();
        if (!(meanDiag > 0) || !double.IsFinite(meanDiag)) return null;
        var lambda = Math.Max(damping, 1e-10);
        for (var attempt = 0; attempt < 5; attempt++, lambda *= 10)
        {
            var damped = h.Plus(eye(size, dtype: ScalarType.Float64).Times(lambda * meanDiag));
            var (l, info) = linalg.cholesky_ex(damped);
            if (info.item<int>() == 0 && l.isfinite().all().item<bool>())
                return l.MoveToOuterDisposeScope();
        }
        return null;
    }

    private static double[] Normalize(IReadOnlyList<Tensor> weights, IReadOnlyList<double> coefficients)
    {
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentNullException.ThrowIfNull(coefficients);
        if (weights.Count == 0) throw new ArgumentException("nothing to merge", nameof(weights));
        if (coefficients.Count != weights.Count) throw new ArgumentException($"{coefficients.Count} coefficients for {weights.Count} weights", nameof(coefficients));
        foreach (var w in weights)
            if (w.dim() != 2 || !w.shape.SequenceEqual(weights[0].shape))
                throw new ArgumentException("member weights must be 2-D and of one shape", nameof(weights));
        var f = coefficients.Select(c => double.IsFinite(c) ? Math.Max(0, c) : 0).ToArray();
        var sum = f.Sum();
        return sum > 0 ? f.Select(x => x / sum).ToArray() : f.Select(_ => 1.0 / f.Length).ToArray();
    }
}
