using System.Numerics;
using System.Runtime.InteropServices;
using MoECompress.Compression.Model;
using MoECompress.Formats.Errors;
using TorchSharp;
using static TorchSharp.torch;

namespace MoECompress.Compression.Quantization;

/// <summary>
/// GPTQ (Frantar et al. 2022, reference <c>fasterquant</c>): quantizes W [out, in] one input column at a time and
/// spreads each column's rounding error over the columns not yet quantized through the inverse Hessian of the layer
/// input, H = 2/N Σ x xᵀ.
/// <list type="number">
/// <item>Dead columns (H_ii = 0: inputs that never fire) get H_ii = 1 and W[:, i] = 0.</item>
/// <item>Act-order: columns are permuted by descending H_ii.</item>
/// <item>H += λ·I with λ = <see cref="GptqOptions.DampPercent"/> × mean diag(H) (raised by
/// <see cref="GptqOptions.DampAutoIncrement"/> while a Cholesky factor fails).</item>
/// <item>U = upper Cholesky factor of H⁻¹ (Cholesky of H, its inverse, Cholesky again).</item>
/// <item>Blocks of <see cref="GptqOptions.BlockSize"/> columns: inside a block each column is quantized, its error
/// e = (w − q) / U_ii is subtracted from the block's remaining columns as e·U[i, i:] (at every width, 1-bit
/// included, which quantizes by the sign rule); after the block, the block's errors update all later columns at once.</item>
/// <item>Group parameters are computed when a group starts (static groups off) from the group's current, already
/// error-updated columns (see <see cref="QuantGrid"/> for the grid).</item>
/// </list>
/// Codes come back in the original column order; with act-order <see cref="QuantizedMatrix.GroupIndex"/> records each
/// column's group as formed in the permuted order (GPTQ's g_idx).
/// </summary>
public static class GptqQuantizer
{
    /// <summary>Quantizes <paramref name="w"/> (float [out, in]; not modified).</summary>
    /// <param name="w">The weight matrix.</param>
    /// <param name="hessianSum">Σ x xᵀ over the calibration inputs of this matrix, float [in, in] (not modified).</param>
    /// <param name="tokens">N, the number of inputs summed into <paramref name="hessianSum"/>.</param>
    /// <param name="scheme">Bits, group size, symmetry.</param>
    /// <param name="options">Dampening, block size, act-order; null for the defaults.</param>
    /// <exception cref="ArgumentException"><paramref name="tokens"/> is 0 (no calibration input reached this matrix:
    /// the caller falls back to RTN), or the shapes disagree.</exception>
    /// <exception cref="MoeCompressException">Usage: the scheme is not implemented; InvalidValues: the Hessian holds
    /// NaN/Inf or has no Cholesky factor even with 100% dampening.</exception>
    public static QuantizedMatrix Quantize(Tensor w, Tensor hessianSum, long tokens, QuantizationScheme scheme, GptqOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(w);
        ArgumentNullException.ThrowIfNull(hessianSum);
        ArgumentNullException.ThrowIfNull(scheme);
        options ??= new GptqOptions();
        scheme.Validate();
        RtnQuantizer.CheckMatrix(w, nameof(w));
        if (tokens <= 0)
            throw new ArgumentException("GPTQ needs the Hessian of at least one calibration input (tokens = 0); quantize with RTN instead", nameof(tokens));
        long rows = w.shape[0], cols = w.shape[1];
        if (hessianSum.dim() != 2 || hessianSum.shape[0] != cols || hessianSum.shape[1] != cols)
            throw new ArgumentException($"the Hessian has shape [{string.Join(", ", hessianSum.shape)}] but W has {cols} input columns", nameof(hessianSum));
        if (options.BlockSize < 1) throw new ArgumentOutOfRangeException(nameof(options), options.BlockSize, "BlockSize must be positive");
        if (options.DampPercent < 0 || options.DampAutoIncrement <= 0)
            throw new ArgumentOutOfRangeException(nameof(options), "DampPercent must be ≥ 0 and DampAutoIncrement > 0");

        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var W = w.to(ScalarType.Float32).clone();
        // At most three n x n matrices beside the caller's Hessian at any time (H, a Cholesky factor and an inverse; the
        // memory planner counts exactly that): H is scaled, dampened and permuted in place or with the old copy freed
        // at once, and disposed as soon as U exists. A 14336-column down_proj matrix is 822 MB.
        var H = hessianSum.dtype == ScalarType.Float32 ? hessianSum.clone() : hessianSum.to(ScalarType.Float32);
        H.Times_((float)(2.0 / tokens));
        if (!H.isfinite().all().item<bool>())
            throw new MoeCompressException(ErrorKind.InvalidValues, "the calibration Hessian holds NaN or Inf values");

        var dead = H.diagonal().EqualTo(0);
        if (dead.any().item<bool>())
        {
            H.diagonal().FillWhere_(dead, 1);
            W.FillWhere_(dead.unsqueeze(0), 0);
        }

        Tensor? perm = null;
        if (options.ActOrder)
        {
            perm = H.diagonal().argsort(descending: true);
            W = Replace(W, W.index_select(1, perm));
            H = Replace(H, H.index_select(0, perm));
            H = Replace(H, H.index_select(1, perm));
        }

        var hinv = InverseCholeskyUpper(H, options);
        H.Dispose();
        NativeHeap.Trim(); // H, its factor and its inverse are freed: an allocator that caches them (tcmalloc) hands them back now
        int g = scheme.EffectiveGroupSize(cols);
        int rowCount = checked((int)rows), colCount = checked((int)cols);
        var codes = new byte[(long)rowCount * colCount]; // [rows, cols] in processing order (codes ≤ 255)
        var scales = new List<Tensor>();
        var zeroPoints = new List<Tensor>();
        float[] scale = [], zero = [];
        int block = options.BlockSize;
        // The block's columns, its errors and its part of U as row-major arrays: the column loop runs in managed code (a
        // handful of native calls per column would cost more than the arithmetic). One set of arrays serves every full
        // block (a new set per block was 450 MB of short-lived large arrays per Mixtral down_proj); the last, narrower
        // block gets its own.
        float[] w1 = [], u1 = [], err1 = [];

        for (int i1 = 0; i1 < colCount; i1 += block)
        {
            using var blockScope = NewDisposeScope();
            int i2 = Math.Min(i1 + block, colCount), count = i2 - i1;
            if (w1.Length != (long)rowCount * count)
            {
                w1 = new float[(long)rowCount * count];  // [rows, count]
                u1 = new float[(long)count * count];     // [count, count]
                err1 = new float[(long)rowCount * count]; // [rows, count]
            }
            CopyTo(W.narrow(1, i1, count), w1);
            CopyTo(hinv.narrow(0, i1, count).narrow(1, i1, count), u1);
            Array.Clear(err1);

            for (int i = 0; i < count; i++)
            {
                int col = i1 + i;
                if (col % g == 0)
                {
                    var x = GroupColumns(W, w1, err1, hinv, rowCount, i1, i2, i, Math.Min(g, colCount - col));
                    var (s, z) = QuantGrid.FindParams(x, scheme);
                    scale = s.data<float>().ToArray();
                    zero = z.data<float>().ToArray();
                    scales.Add(s.MoveToOuterDisposeScope());
                    zeroPoints.Add(z.MoveToOuterDisposeScope());
                }
                QuantizeColumn(w1, err1, u1, codes, scale, zero, scheme, rowCount, count, colCount, i, col);
            }
            if (i2 < colCount)
            {
                var e = tensor(err1, [rows, count]);
                W.narrow(1, i2, cols - i2).sub_(e.matmul(hinv.narrow(0, i1, count).narrow(1, i2, cols - i2)));
            }
        }

        var scaleMatrix = stack(scales, 1);
        var zeroMatrix = stack(zeroPoints, 1);
        var codeMatrix = tensor(codes, [rows, cols]);
        var groupIndex = ScalarOps.Range(cols).FloorOver(g);
        if (perm is not null)
        {
            var inverse = perm.argsort();
            codeMatrix = codeMatrix.index_select(1, inverse);
            groupIndex = groupIndex.index_select(0, inverse);
        }
        return new QuantizedMatrix(scheme, codeMatrix.to(ScalarType.Int32).MoveToOuterDisposeScope(), scaleMatrix.MoveToOuterDisposeScope(),
            zeroMatrix.MoveToOuterDisposeScope(), groupIndex.to(ScalarType.Int32).MoveToOuterDisposeScope());
    }

    /// <summary>
    /// The current values of the <paramref name="n"/> columns of the group starting at block column <paramref name="i"/>,
    /// [rows, n]: the part inside the block from <paramref name="w1"/> (error updates applied), the part beyond the block
    /// from <paramref name="W"/> with this block's pending updates (the errors of its first <paramref name="i"/> columns)
    /// applied.
    /// </summary>
    private static Tensor GroupColumns(Tensor W, float[] w1, float[] err1, Tensor hinv, int rows, int i1, int i2, int i, int n)
    {
        int count = i2 - i1, inBlock = Math.Min(n, count - i);
        var x = tensor(w1, [rows, count]).narrow(1, i, inBlock);
        if (n == inBlock) return x;
        int beyond = n - inBlock;
        var rest = W.narrow(1, i2, beyond);
        if (i > 0)
            rest = rest - tensor(err1, [rows, count]).narrow(1, 0, i).matmul(hinv.narrow(0, i1, i).narrow(1, i2, beyond));
        return cat([x, rest], 1);
    }

    /// <summary>
    /// Quantizes block column <paramref name="i"/> (matrix column <paramref name="col"/>) of every row, records its
    /// code and error e = (w − q) / U_ii, and subtracts e·U[i, i+1:] from the row's later block columns. Rows are
    /// independent, so large blocks run on several threads.
    /// </summary>
    private static void QuantizeColumn(float[] w1, float[] err1, float[] u1, byte[] codes, float[] scale, float[] zero,
        QuantizationScheme scheme, int rows, int count, int cols, int i, int col)
    {
        float d = u1[i * count + i];
        float maxq = scheme.MaxCode;
        bool sign = scheme.Bits == 1;
        int rest = count - i - 1;
        void Rows(int from, int to)
        {
            var u = u1.AsSpan(i * count + i + 1, rest);
            for (int r = from; r < to; r++)
            {
                long o = (long)r * count;
                float w = w1[o + i];
                float code = sign ? (w >= 0f ? 1f : 0f) : Math.Clamp(MathF.Round(w / scale[r]) + zero[r], 0f, maxq);
                float q = scale[r] * (code - zero[r]);
                float e = (w - q) / d;
                err1[o + i] = e;
                codes[(long)r * cols + col] = (byte)code;
                if (rest > 0) SubtractScaled(w1.AsSpan((int)(o + i + 1), rest), u, e);
            }
        }
        const int chunk = 256;
        if ((long)rows * rest < 1 << 16 || rows < 2 * chunk)
        {
            Rows(0, rows);
            return;
        }
        Parallel.For(0, (rows + chunk - 1) / chunk, c => Rows(c * chunk, Math.Min(rows, (c + 1) * chunk)));
    }

    /// <summary>target −= factor · source, element-wise.</summary>
    private static void SubtractScaled(Span<float> target, ReadOnlySpan<float> source, float factor)
    {
        int k = 0;
        if (Vector.IsHardwareAccelerated && target.Length >= Vector<float>.Count)
        {
            var f = new Vector<float>(factor);
            var tv = MemoryMarshal.Cast<float, Vector<float>>(target);
            var sv = MemoryMarshal.Cast<float, Vector<float>>(source);
            for (int v = 0; v < tv.Length; v++) tv[v] -= f * sv[v];
            k = tv.Length * Vector<float>.Count;
        }
        for (; k < target.Length; k++) target[k] -= factor * source[k];
    }

    /// <summary>Copies a (possibly strided) float32 tensor's values, row-major, into <paramref name="destination"/>.</summary>
    private static void CopyTo(Tensor source, float[] destination)
    {
        using var dense = source.contiguous();
        MemoryMarshal.Cast<byte, float>(dense.bytes).CopyTo(destination);
    }

    /// <summary>Disposes <paramref name="old"/> and returns <paramref name="replacement"/> (a new copy made from it).</summary>
    private static Tensor Replace(Tensor old, Tensor replacement)
    {
        old.Dispose();
        return replacement;
    }

    /// <summary>
    /// Upper Cholesky factor U of (H + λI)⁻¹ (so (H + λI)⁻¹ = UᵀU), raising λ by the auto-increment until both
    /// factorizations succeed.
    /// </summary>
    private static Tensor InverseCholeskyUpper(Tensor H, GptqOptions options)
    {
        double meanDiag = H.diagonal().mean().item<float>();
        using var diagonal = H.diagonal();
        using var undamped = diagonal.clone();
        for (double damp = options.DampPercent; damp <= 1.0 + 1e-9; damp += options.DampAutoIncrement)
        {
            using var attempt = NewDisposeScope();
            // H + λI with λ added to H's own diagonal (no identity matrix, no second n x n copy); each attempt starts
            // from the undamped diagonal, so the values equal H + λI exactly.
            using (var damped = undamped.Plus((float)(damp * meanDiag))) diagonal.copy_(damped);
            var (l, info) = linalg.cholesky_ex(H);
            if (info.item<int>() != 0) { l.Dispose(); continue; }
            var inverse = cholesky_inverse(l);
            l.Dispose();
            var (l2, info2) = linalg.cholesky_ex(inverse);
            inverse.Dispose();
            if (info2.item<int>() != 0) { l2.Dispose(); continue; }
            var upper = l2.t().contiguous();
            l2.Dispose();
            return upper.MoveToOuterDisposeScope();
        }
        throw new MoeCompressException(ErrorKind.InvalidValues,
            "the calibration Hessian has no Cholesky factor even with 100% dampening (degenerate calibration inputs)");
    }
}
