using static TorchSharp.torch;

namespace MoECompress.Tests.Quantization;

/// <summary>Seeded random matrices for the quantizer tests (System.Random, independent of torch's generator).</summary>
internal static class QuantTestData
{
    /// <summary>Standard normal values [rows, cols] (Box–Muller).</summary>
    public static float[] Normal(int count, int seed)
    {
        var rng = new Random(seed);
        var v = new float[count];
        for (int i = 0; i < count; i += 2)
        {
            double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
            double r = Math.Sqrt(-2 * Math.Log(u1));
            v[i] = (float)(r * Math.Cos(2 * Math.PI * u2));
            if (i + 1 < count) v[i + 1] = (float)(r * Math.Sin(2 * Math.PI * u2));
        }
        return v;
    }

    public static Tensor NormalMatrix(long rows, long cols, int seed) => tensor(Normal(checked((int)(rows * cols)), seed), [rows, cols]);

    /// <summary>
    /// Correlated inputs X [tokens, features] = Z·B + 0.05·N: a random rank-(features/4) mixture with column scales from
    /// 0.1 to 3 plus a little independent noise (as layer inputs are: strongly correlated, with a spread of diagonal
    /// Hessian values).
    /// </summary>
    public static Tensor CorrelatedInputs(long tokens, long features, int seed)
    {
        using var scope = NewDisposeScope();
        long rank = Math.Max(1, features / 4);
        var z = NormalMatrix(tokens, rank, seed);
        var b = NormalMatrix(rank, features, seed + 1) * linspace(0.1, 3.0, features, ScalarType.Float32).unsqueeze(0);
        var noise = NormalMatrix(tokens, features, seed + 2) * 0.05f;
        return (z.matmul(b) + noise).MoveToOuterDisposeScope();
    }

    /// <summary>‖X Wᵀ − X Ŵᵀ‖_F / ‖X Wᵀ‖_F.</summary>
    public static double OutputError(Tensor x, Tensor w, Tensor wHat)
    {
        using var scope = NewDisposeScope();
        var y = x.matmul(w.t());
        return (y - x.matmul(wHat.t())).norm().item<float>() / (double)y.norm().item<float>();
    }
}
