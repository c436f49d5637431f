using MoECompress.Tests.Infrastructure;
using MoECompress.Compression.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace MoECompress.Tests.Model;

public class RotaryEmbeddingTests
{
    private static void AssertClose(IReadOnlyList<double> expected, IReadOnlyList<double> actual, double tol = 1e-9)
    {
        Assert.Equal(expected.Count, actual.Count);
        for (var i = 0; i < expected.Count; i++)
            Assert.True(Math.Abs(expected[i] - actual[i]) <= tol * Math.Max(1, Math.Abs(expected[i])),
                $"index {i}: expected {expected[i]}, got {actual[i]}");
    }

    [Fact]
    public void DefaultFrequenciesAreThetaPowers()
    {
        var rope = new RotaryEmbedding(8, 10000, RopeScaling.None, 64);
        AssertClose(new[] { 1.0, 0.1, 0.01, 0.001 }, rope.InverseFrequencies(5));
        Assert.Equal(1.0, rope.AttentionFactor);
    }

    [Fact]
    public void TwoPositionsRotateByPositionTimesFrequency()
    {
        // Position 0 is unchanged; position 1 rotates pair (x_i, x_{i+d/2}) by angle theta_i = 10000^(-2i/d).
        var rope = new RotaryEmbedding(4, 10000, RopeScaling.None, 64);
        using var scope = NewDisposeScope();
        var x = tensor(new float[] { 1, 2, 3, 4, 0.5f, -1, 2, -3 }).reshape(2, 4);
        using var tables = rope.Tables(2);
        var y = RotaryEmbedding.Apply(x, tables, interleaved: false);
        var got = y.data<float>().ToArray();
        Assert.Equal(new float[] { 1, 2, 3, 4 }, got[..4]);
        double t0 = 1.0, t1 = 0.01; // 10000^0, 10000^(-2/4)
        double[] p1 = { 0.5, -1, 2, -3 };
        var expected = new[]
        {
            p1[0] * Math.Cos(t0) - p1[2] * Math.Sin(t0),
            p1[1] * Math.Cos(t1) - p1[3] * Math.Sin(t1),
            p1[2] * Math.Cos(t0) + p1[0] * Math.Sin(t0),
            p1[3] * Math.Cos(t1) + p1[1] * Math.Sin(t1),
        };
        AssertClose(expected, got[4..].Select(v => (double)v).ToArray(), 1e-6);
    }

    [Fact]
    public void InterleavedLayoutRotatesAdjacentPairs()
    {
        // DeepSeek layout: pairs (x_2i, x_2i+1) rotate by theta_i; the output is stored as [evens..., odds...].
        var rope = new RotaryEmbedding(4, 100, RopeScaling.None, 64, interleaved: true);
        using var scope = NewDisposeScope();
        var x = tensor(new float[] { 0, 0, 0, 0, 1, 2, 3, 4 }).reshape(2, 4);
        using var tables = rope.Tables(2);
        var got = RotaryEmbedding.Apply(x, tables, interleaved: true).data<float>().ToArray()[4..];
        double a0 = 1.0, a1 = 0.1; // 100^0, 100^(-2/4)
        var expected = new[]
        {
            1 * Math.Cos(a0) - 2 * Math.Sin(a0), // pair 0 real part
            3 * Math.Cos(a1) - 4 * Math.Sin(a1), // pair 1 real part
            2 * Math.Cos(a0) + 1 * Math.Sin(a0), // pair 0 imaginary part
            4 * Math.Cos(a1) + 3 * Math.Sin(a1), // pair 1 imaginary part
        };
        AssertClose(expected, got.Select(v => (double)v).ToArray(), 1e-6);
    }

    [Fact]
    public void LinearScalingDividesFrequencies()
    {
        var rope = new RotaryEmbedding(8, 10000, new RopeScaling { Type = RopeType.Linear, Factor = 2 }, 64);
        AssertClose(new[] { 0.5, 0.05, 0.005, 0.0005 }, rope.InverseFrequencies(5));
    }

    [Fact]
    public void YarnBlendsInterpolationAndExtrapolation()
    {
        // dim 8, base 1e4, original context 16, factor 4: correction range [floor(-1.099)->0, ceil(0.406)=1],
        // so frequency 0 extrapolates (kept) and 1..3 interpolate (divided by 4).
        var scaling = new RopeScaling { Type = RopeType.Yarn, Factor = 4, OriginalMaxPositionEmbeddings = 16 };
        var rope = new RotaryEmbedding(8, 10000, scaling, 64);
        AssertClose(new[] { 1.0, 0.025, 0.0025, 0.00025 }, rope.InverseFrequencies(5));
        Assert.Equal(0.1 * Math.Log(4) + 1, rope.AttentionFactor, 12);

        var deepseek = new RotaryEmbedding(8, 10000, scaling with { Mscale = 0.707, MscaleAllDim = 0.707 }, 64);
        Assert.Equal(1.0, deepseek.AttentionFactor, 12);
        var ratio = new RotaryEmbedding(8, 10000, scaling with { Mscale = 1.0, MscaleAllDim = 0.8 }, 64);
        Assert.Equal((0.1 * Math.Log(4) + 1) / (0.08 * Math.Log(4) + 1), ratio.AttentionFactor, 12);
    }

    [Fact]
    public void YarnAttentionFactorScalesCosAndSin()
    {
        var scaling = new RopeScaling { Type = RopeType.Yarn, Factor = 4, OriginalMaxPositionEmbeddings = 16 };
        var rope = new RotaryEmbedding(8, 10000, scaling, 64);
        using var tables = rope.Tables(3);
        var cos = tables.Cos.data<float>().ToArray();
        var sin = tables.Sin.data<float>().ToArray();
        var f = rope.AttentionFactor;
        // position 2, frequency 1 (0.025): column 1 and its duplicate column 5.
        Tolerance.Close(f * Math.Cos(2 * 0.025), cos[2 * 8 + 1], Tolerance.Float32, 1e-6);
        Tolerance.Close(f * Math.Sin(2 * 0.025), sin[2 * 8 + 5], Tolerance.Float32, 1e-6);
        Tolerance.Close(f, cos[0], Tolerance.Float32, 1e-6);
    }

    [Fact]
    public void Llama3ScalesLowFrequenciesAndSmoothsTheMiddle()
    {
        // wavelengths 2π/[1, .1, .01, .001] = [6.3, 62.8, 628, 6283]; low/high thresholds 64/1 and 64/4.
        var scaling = new RopeScaling { Type = RopeType.Llama3, Factor = 8, LowFreqFactor = 1, HighFreqFactor = 4, OriginalMaxPositionEmbeddings = 64 };
        var rope = new RotaryEmbedding(8, 10000, scaling, 512);
        var smooth = (64 / (2 * Math.PI / 0.1) - 1) / 3.0;
        AssertClose(new[] { 1.0, (1 - smooth) * 0.1 / 8 + smooth * 0.1, 0.01 / 8, 0.001 / 8 }, rope.InverseFrequencies(5));
    }

    [Fact]
    public void DynamicNtkGrowsThetaOnlyBeyondTheContext()
    {
        var scaling = new RopeScaling { Type = RopeType.Dynamic, Factor = 2 };
        var rope = new RotaryEmbedding(8, 10000, scaling, 16);
        AssertClose(new[] { 1.0, 0.1, 0.01, 0.001 }, rope.InverseFrequencies(16));
        var theta = 10000 * Math.Pow(2.0 * 32 / 16 - 1, 8 / 6.0);
        AssertClose(Enumerable.Range(0, 4).Select(i => 1 / Math.Pow(theta, 2.0 * i / 8)).ToArray(), rope.InverseFrequencies(32));
    }

    [Fact]
    public void LongRopePicksShortOrLongFactors()
    {
        var scaling = new RopeScaling
        {
            Type = RopeType.LongRope, OriginalMaxPositionEmbeddings = 16,
            ShortFactor = new[] { 1.0, 2, 3, 4 }, LongFactor = new[] { 2.0, 4, 6, 8 },
        };
        var rope = new RotaryEmbedding(8, 10000, scaling, 64);
        AssertClose(new[] { 1.0, 0.1 / 2, 0.01 / 3, 0.001 / 4 }, rope.InverseFrequencies(16));
        AssertClose(new[] { 0.5, 0.1 / 4, 0.01 / 6, 0.001 / 8 }, rope.InverseFrequencies(17));
        Assert.Equal(Math.Sqrt(1 + Math.Log(4) / Math.Log(16)), rope.AttentionFactor, 12);
    }
}
