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
}
