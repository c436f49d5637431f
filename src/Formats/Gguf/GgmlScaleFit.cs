namespace MoECompress.Formats.Gguf;

/// <summary>
/// Scale searches shared by the block codecs: for a group of values x with weights w (importance, or all ones), find
/// the integer codes and the scale (and offset) that minimise Σ w·(x − x̂)². Both try a small grid of candidate inverse
/// scales around the range-based one and refit the scale (and offset) by weighted least squares for each candidate's
/// codes, keeping the best; with exactly representable input the range-based candidate reproduces it without error.
/// </summary>
internal static class GgmlScaleFit
{
    /// <summary>Candidate steps either side of the range-based inverse scale (tenths of a code step).</summary>
    private const int Steps = 9;

    /// <summary>
    /// Symmetric codes q ∈ [−nmax, nmax−1], x̂ = d·q. The value of largest magnitude maps to −nmax (as ggml's reference
    /// quantizers do), then the grid is searched. Returns d (0 and all-zero codes for an all-zero group).
    /// </summary>
    public static float Symmetric(ReadOnlySpan<float> x, ReadOnlySpan<float> w, int nmax, Span<int> q)
    {
        float amax = 0, max = 0;
        for (var i = 0; i < x.Length; i++)
        {
            var a = MathF.Abs(x[i]);
            if (a > amax) { amax = a; max = x[i]; }
        }
        if (amax < 1e-30f)
        {
            q.Clear();
            return 0;
        }
        Span<int> trial = stackalloc int[x.Length];
        double bestScore = -1;
        float bestD = 0;
        for (var t = -Steps; t <= Steps; t++)
        {
            if (t != 0 && w.IsEmpty) continue;
            var iscale = -(nmax + 0.1f * t) / max;
            double sumlx = 0, suml2 = 0;
            for (var i = 0; i < x.Length; i++)
            {
                var l = Math.Clamp((int)MathF.Round(iscale * x[i], MidpointRounding.AwayFromZero), -nmax, nmax - 1);
                trial[i] = l;
                var wi = w.IsEmpty ? 1f : w[i];
                sumlx += wi * x[i] * l;
                suml2 += wi * l * l;
            }
            if (suml2 <= 0) continue;
            var score = sumlx * sumlx / suml2;
            if (score > bestScore)
            {
                bestScore = score;
                bestD = (float)(sumlx / suml2);
                trial.CopyTo(q);
            }
        }
        if (bestScore < 0)
        {
            q.Clear();
            return 0;
        }
        return bestD;
    }

    /// <summary>
    /// Affine codes q ∈ [0, nmax], x̂ = d·q + m. With <paramref name="offsetAtMostZero"/> (the K-quants, which store
    /// −m as a non-negative "min") m is kept ≤ 0. Returns (d, m).
    /// </summary>
    public static (float Scale, float Offset) Affine(ReadOnlySpan<float> x, ReadOnlySpan<float> w, int nmax, Span<int> q, bool offsetAtMostZero)
    {
        float lo = x[0], hi = x[0];
        for (var i = 1; i < x.Length; i++)
        {
            lo = MathF.Min(lo, x[i]);
            hi = MathF.Max(hi, x[i]);
        }
        if (offsetAtMostZero && lo > 0) lo = 0;
        if (hi <= lo)
        {
            q.Clear();
            return (0, lo);
        }
        Span<int> trial = stackalloc int[x.Length];
        double bestErr = double.PositiveInfinity;
        float bestD = (hi - lo) / nmax, bestM = lo;
        for (var t = -Steps; t <= Steps; t++)
        {
            if (t != 0 && w.IsEmpty) continue;
            var iscale = (nmax + 0.1f * t) / (hi - lo);
            double sw = 0, sx = 0, sl = 0, sl2 = 0, sxl = 0;
            for (var i = 0; i < x.Length; i++)
            {
                var l = Math.Clamp((int)MathF.Round(iscale * (x[i] - lo), MidpointRounding.AwayFromZero), 0, nmax);
                trial[i] = l;
                var wi = w.IsEmpty ? 1f : w[i];
                sw += wi; sx += wi * x[i]; sl += wi * l; sl2 += wi * l * l; sxl += wi * x[i] * l;
            }
            double d, m;
            var det = sw * sl2 - sl * sl;
            if (det <= 0) continue;
            d = (sw * sxl - sx * sl) / det;
            m = (sl2 * sx - sl * sxl) / det;
            if (offsetAtMostZero && m > 0)
            {
                m = 0;
                d = sl2 > 0 ? sxl / sl2 : 0;
            }
            double err = 0;
            for (var i = 0; i < x.Length; i++)
            {
                var e = d * trial[i] + m - x[i];
                err += (w.IsEmpty ? 1f : w[i]) * e * e;
            }
            if (err < bestErr)
            {
                bestErr = err;
                bestD = (float)d;
                bestM = (float)m;
                trial.CopyTo(q);
            }
        }
        if (double.IsPositiveInfinity(bestErr))
        {
            for (var i = 0; i < x.Length; i++) q[i] = Math.Clamp((int)MathF.Round((x[i] - lo) / bestD), 0, nmax);
        }
        return (bestD, bestM);
    }
}
