using MoECompress.Compression.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace MoECompress.Tests.Model;

public class AttentionTests
{
    private const int H = 8, L = 5;

    /// <summary>Rotate-half RoPE on one head vector at position t (pairs i and i + d/2).</summary>
    private static double[] RotateHalf(double[] x, int t, double theta)
    {
        var d = x.Length;
        var y = new double[d];
        for (var i = 0; i < d / 2; i++)
        {
            var a = t * Math.Pow(theta, -2.0 * i / d);
            y[i] = x[i] * Math.Cos(a) - x[i + d / 2] * Math.Sin(a);
            y[i + d / 2] = x[i + d / 2] * Math.Cos(a) + x[i] * Math.Sin(a);
        }
        return y;
    }

    /// <summary>Complex-pair RoPE (DeepSeek): pair (x_2i, x_2i+1) rotated by t·theta_i.</summary>
    private static double[] RotatePairs(double[] x, int t, double theta)
    {
        var d = x.Length;
        var y = new double[d];
        for (var i = 0; i < d / 2; i++)
        {
            var a = t * Math.Pow(theta, -2.0 * i / d);
            y[2 * i] = x[2 * i] * Math.Cos(a) - x[2 * i + 1] * Math.Sin(a);
            y[2 * i + 1] = x[2 * i + 1] * Math.Cos(a) + x[2 * i] * Math.Sin(a);
        }
        return y;
    }

    private static double[] Slice(double[] v, int start, int length) => v.Skip(start).Take(length).ToArray();

    /// <summary>softmax over visible keys of q·k·scale, then Σ p·v.</summary>
    private static double[] Attend(double[] q, IReadOnlyList<double[]> keys, IReadOnlyList<double[]> values, int t, double scale, int? window)
    {
        var visible = Enumerable.Range(0, t + 1).Where(j => window is null || t - j < window).ToArray();
        var p = Reference.Softmax(visible.Select(j => Reference.Dot(q, keys[j]) * scale).ToArray());
        var o = new double[values[0].Length];
        for (var n = 0; n < visible.Length; n++) o = Reference.Add(o, Reference.Scale(values[visible[n]], p[n]));
        return o;
    }

    private sealed record GqaCase(int Heads, int KvHeads, int HeadDim, bool Bias, string QkNorm, double? Clip, int? Window);

    public static IEnumerable<object[]> GqaCases => new[]
    {
        new object[] { "mha", new GqaCase(2, 2, 4, false, "none", null, null) },
        new object[] { "gqa+bias (Qwen2)", new GqaCase(4, 2, 4, true, "none", null, null) },
        new object[] { "per-head qk norm (Qwen3)", new GqaCase(4, 1, 6, false, "head", null, null) },
        new object[] { "whole-projection qk norm + clip (OLMoE)", new GqaCase(2, 2, 4, false, "full", 0.7, null) },
        new object[] { "sliding window", new GqaCase(2, 1, 4, false, "none", null, 2) },
    };

    [Theory]
    [MemberData(nameof(GqaCases))]
    public void GroupedQueryAttentionMatchesDirectPerHeadComputation(string name, object caseObject)
    {
        var c = (GqaCase)caseObject;
        using var scope = NewDisposeScope();
        var rng = new Random(5);
        int nq = c.Heads, nkv = c.KvHeads, d = c.HeadDim;
        Tensor W(long o, long i) => TinyModel.Randn(rng, 0.5, o, i);
        var wq = W(nq * d, H); var wk = W(nkv * d, H); var wv = W(nkv * d, H); var wo = W(H, nq * d);
        var bq = c.Bias ? TinyModel.Randn(rng, 0.3, nq * d) : null;
        var bk = c.Bias ? TinyModel.Randn(rng, 0.3, nkv * d) : null;
        var bv = c.Bias ? TinyModel.Randn(rng, 0.3, nkv * d) : null;
        var qnSize = c.QkNorm == "head" ? d : nq * d;
        var knSize = c.QkNorm == "head" ? d : nkv * d;
        var qn = c.QkNorm == "none" ? null : TinyModel.Randn(rng, 0.2, qnSize) + 1;
        var kn = c.QkNorm == "none" ? null : TinyModel.Randn(rng, 0.2, knSize) + 1;
        const double eps = 1e-6, theta = 100;
        var attn = new GroupedQueryAttention(nq, nkv, d,
            new LinearWeights(wq.clone(), bq?.clone()), new LinearWeights(wk.clone(), bk?.clone()),
            new LinearWeights(wv.clone(), bv?.clone()), new LinearWeights(wo.clone()),
            1 / Math.Sqrt(d), c.Window,
            qn is null ? null : new RmsNorm(qn.clone(), eps), kn is null ? null : new RmsNorm(kn.clone(), eps), c.Clip);
        var x = TinyModel.Randn(new Random(6), 1.0, 1, L, H);
        using var tables = new RotaryEmbedding(d, theta, RopeScaling.None, 64).Tables(L);
        using var noGrad = no_grad();
        var got = Reference.Matrix(attn.Forward(x, tables)[0]);
        attn.Dispose();

        var xs = Reference.Matrix(x[0]);
        double[] Proj(Tensor w, Tensor? b, double[] v) => b is null ? Reference.MatVec(Reference.Matrix(w), v) : Reference.Add(Reference.MatVec(Reference.Matrix(w), v), Reference.Vector(b));
        double Clip(double v) => c.Clip is { } cl ? Math.Clamp(v, -cl, cl) : v;
        var qHeads = new double[L][][];
        var kHeads = new double[L][][];
        var vHeads = new double[L][][];
        for (var t = 0; t < L; t++)
        {
            var xt = Reference.Row(xs, t);
            var q = Proj(wq, bq, xt);
            var k = Proj(wk, bk, xt);
            var v = Proj(wv, bv, xt);
            if (c.QkNorm == "full")
            {
                q = Reference.RmsNorm(q, Reference.Vector(qn!), eps);
                k = Reference.RmsNorm(k, Reference.Vector(kn!), eps);
            }
            q = q.Select(Clip).ToArray(); k = k.Select(Clip).ToArray(); v = v.Select(Clip).ToArray();
            qHeads[t] = Enumerable.Range(0, nq).Select(h => Slice(q, h * d, d)).ToArray();
            kHeads[t] = Enumerable.Range(0, nkv).Select(h => Slice(k, h * d, d)).ToArray();
            vHeads[t] = Enumerable.Range(0, nkv).Select(h => Slice(v, h * d, d)).ToArray();
            if (c.QkNorm == "head")
            {
                qHeads[t] = qHeads[t].Select(hv => Reference.RmsNorm(hv, Reference.Vector(qn!), eps)).ToArray();
                kHeads[t] = kHeads[t].Select(hv => Reference.RmsNorm(hv, Reference.Vector(kn!), eps)).ToArray();
            }
            qHeads[t] = qHeads[t].Select(hv => RotateHalf(hv, t, theta)).ToArray();
            kHeads[t] = kHeads[t].Select(hv => RotateHalf(hv, t, theta)).ToArray();
        }
        var woM = Reference.Matrix(wo);
        for (var t = 0; t < L; t++)
        {
            var concat = new List<double>();
            for (var h = 0; h < nq; h++)
            {
                var g = h / (nq / nkv); // kv head g serves query heads g·r … g·r + r − 1
                concat.AddRange(Attend(qHeads[t][h], kHeads.Select(k => k[g]).ToArray(), vHeads.Select(v => v[g]).ToArray(), t, 1 / Math.Sqrt(d), c.Window));
            }
            Reference.AssertClose(Reference.MatVec(woM, concat.ToArray()), Reference.Row(got, t), 2e-5, $"{name} position {t}");
        }
    }

    [Theory]
    [InlineData(null)]
    [InlineData(3)]
    public void LatentAttentionMatchesDirectPerHeadComputation(int? qLoraRank)
    {
        using var scope = NewDisposeScope();
        var spec = new MlaSpec(qLoraRank, KvLoraRank: 4, QkNopeHeadDim: 3, QkRopeHeadDim: 4, VHeadDim: 2);
        const int heads = 2;
        const double theta = 50, eps = 1e-6;
        var rng = new Random(8);
        Tensor W(long o, long i) => TinyModel.Randn(rng, 0.5, o, i);
        var qk = spec.QkHeadDim;
        Tensor? wq = null, wqa = null, wqb = null, qan = null;
        if (qLoraRank is { } r)
        {
            wqa = W(r, H);
            qan = TinyModel.Randn(rng, 0.2, r) + 1;
            wqb = W(heads * qk, r);
        }
        else wq = W(heads * qk, H);
        var wkva = W(spec.KvLoraRank + spec.QkRopeHeadDim, H);
        var kvan = TinyModel.Randn(rng, 0.2, spec.KvLoraRank) + 1;
        var wkvb = W(heads * (spec.QkNopeHeadDim + spec.VHeadDim), spec.KvLoraRank);
        var wo = W(H, heads * spec.VHeadDim);
        var scale = 0.37; // any softmax scale (DeepSeek YaRN makes it differ from 1/sqrt(qk))
        var mla = new MultiHeadLatentAttention(spec, heads, scale, ropeInterleaved: true,
            wq is null ? null : new LinearWeights(wq.clone()),
            wqa is null ? null : new LinearWeights(wqa.clone()), qan is null ? null : new RmsNorm(qan.clone(), eps),
            wqb is null ? null : new LinearWeights(wqb.clone()),
            new LinearWeights(wkva.clone()), new RmsNorm(kvan.clone(), eps), new LinearWeights(wkvb.clone()), new LinearWeights(wo.clone()));
        var x = TinyModel.Randn(new Random(9), 1.0, 1, L, H);
        using var tables = new RotaryEmbedding(spec.QkRopeHeadDim, theta, RopeScaling.None, 64, interleaved: true).Tables(L);
        using var noGrad = no_grad();
        var got = Reference.Matrix(mla.Forward(x, tables)[0]);
        mla.Dispose();

        var xs = Reference.Matrix(x[0]);
        var queries = new double[L][][];
        var keys = new double[L][][];
        var values = new double[L][][];
        for (var t = 0; t < L; t++)
        {
            var xt = Reference.Row(xs, t);
            var q = wq is not null ? Reference.MatVec(Reference.Matrix(wq), xt)
                : Reference.MatVec(Reference.Matrix(wqb!), Reference.RmsNorm(Reference.MatVec(Reference.Matrix(wqa!), xt), Reference.Vector(qan!), eps));
            var ckv = Reference.MatVec(Reference.Matrix(wkva), xt);
            var latent = Reference.RmsNorm(Slice(ckv, 0, spec.KvLoraRank), Reference.Vector(kvan), eps);
            var kRope = RotatePairs(Slice(ckv, spec.KvLoraRank, spec.QkRopeHeadDim), t, theta);
            var kv = Reference.MatVec(Reference.Matrix(wkvb), latent);
            queries[t] = new double[heads][];
            keys[t] = new double[heads][];
            values[t] = new double[heads][];
            for (var h = 0; h < heads; h++)
            {
                var qh = Slice(q, h * qk, qk);
                queries[t][h] = Slice(qh, 0, spec.QkNopeHeadDim).Concat(RotatePairs(Slice(qh, spec.QkNopeHeadDim, spec.QkRopeHeadDim), t, theta)).ToArray();
                var kvh = Slice(kv, h * (spec.QkNopeHeadDim + spec.VHeadDim), spec.QkNopeHeadDim + spec.VHeadDim);
                keys[t][h] = Slice(kvh, 0, spec.QkNopeHeadDim).Concat(kRope).ToArray();
                values[t][h] = Slice(kvh, spec.QkNopeHeadDim, spec.VHeadDim);
            }
        }
        var woM = Reference.Matrix(wo);
        for (var t = 0; t < L; t++)
        {
            var concat = new List<double>();
            for (var h = 0; h < heads; h++)
                concat.AddRange(Attend(queries[t][h], keys.Select(k => k[h]).ToArray(), values.Select(v => v[h]).ToArray(), t, scale, null));
            Reference.AssertClose(Reference.MatVec(woM, concat.ToArray()), Reference.Row(got, t), 2e-5, $"MLA position {t}");
        }
    }
}
