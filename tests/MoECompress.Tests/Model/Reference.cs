using static TorchSharp.torch;

namespace MoECompress.Tests.Model;

/// <summary>Plain double-precision formulas the tests compare the engine against (no torch ops).</summary>
internal static class Reference
{
    public static double[,] Matrix(Tensor t)
    {
        var rows = (int)t.shape[0];
        var cols = (int)t.shape[1];
        var data = t.to(ScalarType.Float32).contiguous().data<float>().ToArray();
        var m = new double[rows, cols];
        for (var i = 0; i < rows; i++)
            for (var j = 0; j < cols; j++)
                m[i, j] = data[i * cols + j];
        return m;
    }

    public static double[] Vector(Tensor t) => t.to(ScalarType.Float32).contiguous().data<float>().ToArray().Select(v => (double)v).ToArray();

    public static double[] Row(double[,] m, int i) => Enumerable.Range(0, m.GetLength(1)).Select(j => m[i, j]).ToArray();

    /// <summary>W·x for W [out, in].</summary>
    public static double[] MatVec(double[,] w, double[] x)
    {
        var y = new double[w.GetLength(0)];
        for (var i = 0; i < y.Length; i++)
        {
            double s = 0;
            for (var j = 0; j < x.Length; j++) s += w[i, j] * x[j];
            y[i] = s;
        }
        return y;
    }

    public static double Dot(double[] a, double[] b) => a.Zip(b, (x, y) => x * y).Sum();

    public static double Silu(double v) => v / (1 + Math.Exp(-v));

    public static double Sigmoid(double v) => 1 / (1 + Math.Exp(-v));

    public static double[] Softmax(double[] z)
    {
        var m = z.Max();
        var e = z.Select(v => Math.Exp(v - m)).ToArray();
        var s = e.Sum();
        return e.Select(v => v / s).ToArray();
    }

    /// <summary>The k largest logits, best first, weighted by a softmax over those k (GPT-OSS, GraniteMoE routers).</summary>
    public static (int[] Experts, double[] Weights) TopKSoftmax(double[] logits, int k)
    {
        var picked = Enumerable.Range(0, logits.Length).OrderByDescending(e => logits[e]).Take(k).ToArray();
        return (picked, Softmax(picked.Select(e => logits[e]).ToArray()));
    }

    /// <summary>down(silu(gate·x) ⊙ up·x).</summary>
    public static double[] GatedMlp(double[,] gate, double[,] up, double[,] down, double[] x)
    {
        var g = MatVec(gate, x);
        var u = MatVec(up, x);
        return MatVec(down, g.Zip(u, (a, b) => Silu(a) * b).ToArray());
    }

    public static double[] RmsNorm(double[] x, double[] w, double eps)
    {
        var ms = x.Select(v => v * v).Average();
        var r = 1 / Math.Sqrt(ms + eps);
        return x.Select((v, i) => w[i] * v * r).ToArray();
    }

    public static double[] Add(double[] a, double[] b) => a.Zip(b, (x, y) => x + y).ToArray();

    public static double[] Scale(double[] a, double s) => a.Select(v => v * s).ToArray();

    public static void AssertClose(double[] expected, double[] actual, double tol, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (var i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i] - actual[i]) <= tol * (1 + Math.Abs(expected[i])),
                $"{what}[{i}]: expected {expected[i]:R}, got {actual[i]:R}");
    }

    /// <summary>‖actual − expected‖_F ≤ tolerance·‖expected‖_F and every |difference| ≤ tolerance·max |expected|.</summary>
    public static void AssertRelativelyClose(double[,] expected, double[,] actual, double tolerance)
    {
        Assert.Equal(expected.GetLength(0), actual.GetLength(0));
        Assert.Equal(expected.GetLength(1), actual.GetLength(1));
        double diff = 0, norm = 0, worst = 0, scale = 0;
        for (int i = 0; i < expected.GetLength(0); i++)
            for (int j = 0; j < expected.GetLength(1); j++)
            {
                double d = actual[i, j] - expected[i, j];
                diff += d * d;
                norm += expected[i, j] * expected[i, j];
                worst = Math.Max(worst, Math.Abs(d));
                scale = Math.Max(scale, Math.Abs(expected[i, j]));
            }
        double relative = Math.Sqrt(diff / norm);
        Assert.True(relative <= tolerance && worst <= tolerance * scale,
            $"relative error {relative:E2} (worst element {worst:E2} of max |logit| {scale:E2}), tolerance {tolerance:E0}");
    }


    /// <summary>Logits [L, V] = lm_head · RMSNorm(x[t]) for the last hidden states of a sequence.</summary>
    public static double[,] HeadLogits(double[][] x, double[] finalNorm, double[,] head, double eps)
    {
        var logits = new double[x.Length, head.GetLength(0)];
        for (int t = 0; t < x.Length; t++)
        {
            var row = MatVec(head, RmsNorm(x[t], finalNorm, eps));
            for (int v = 0; v < row.Length; v++) logits[t, v] = row[v];
        }
        return logits;
    }
}
