using MoECompress.Formats.Families;
using MoECompress.Formats.Safetensors;
using TorchSharp;

namespace MoECompress.Tests.Calibration;

/// <summary>
/// Expected calibration statistics of one MoE layer computed the slow, obvious way: a loop over tokens that recomputes
/// the router logits with a plain matrix-vector product in float64, softmax or sigmoid, the (group-limited) top-k,
/// the gates and each chosen expert's SwiGLU output, and sums everything.
/// </summary>
internal sealed class BruteForceCalibration
{
    public int E, K, H, I;
    public long N;
    public long[] Count = null!;
    public double[] ScoreMass = null!, GateMass = null!, LogitSum = null!, ReapSum = null!, MaxAbs = null!;
    public long[,] Cosel = null!;
    public double[,] OutputSum = null!, AllTokenOutputSum = null!;
    public double[][,] Hin = null!, HinW = null!, Hd = null!, HdW = null!;
    public List<double[]> Logits = new();
    /// <summary>Smallest gap seen between the k-th and (k+1)-th selection score (guards against fixture near-ties).</summary>
    public double SmallestSelectionGap = double.MaxValue;

    public static BruteForceCalibration Compute(IReadOnlyList<double[]> tokens, ITensorSource source, IMoEFamily family, MoEConfig moe,
        int layer, BruteForceRouting rule)
    {
        int e = moe.NumExperts, k = moe.TopK, h = moe.HiddenSize, inter = moe.ExpertIntermediateSize;
        var r = new BruteForceCalibration
        {
            E = e, K = k, H = h, I = inter, N = tokens.Count,
            Count = new long[e], ScoreMass = new double[e], GateMass = new double[e], LogitSum = new double[e], ReapSum = new double[e],
            MaxAbs = new double[e], Cosel = new long[e, e], OutputSum = new double[e, h], AllTokenOutputSum = new double[e, h],
            Hin = New(e, h), HinW = New(e, h), Hd = New(e, inter), HdW = New(e, inter),
        };
        var router = Read(source, family.RouterWeightName(layer, moe));
        var bias = rule.UseCorrectionBias ? Read(source, family.CorrectionBiasName(layer, moe)!) : null;
        var gate = new double[e][]; var up = new double[e][]; var down = new double[e][];
        for (var i = 0; i < e; i++)
        {
            gate[i] = Read(source, family.ExpertTensor(layer, i, ExpertProjection.Gate, moe).TensorName);
            up[i] = Read(source, family.ExpertTensor(layer, i, ExpertProjection.Up, moe).TensorName);
            down[i] = Read(source, family.ExpertTensor(layer, i, ExpertProjection.Down, moe).TensorName);
        }

        foreach (var x in tokens)
        {
            var z = new double[e];
            for (var i = 0; i < e; i++)
            {
                double s = 0;
                for (var j = 0; j < h; j++) s += router[i * h + j] * x[j];
                z[i] = s;
            }
            r.Logits.Add(z);
            double[] p;
            if (rule.Sigmoid) p = z.Select(v => 1.0 / (1.0 + Math.Exp(-v))).ToArray();
            else
            {
                var max = z.Max();
                var ex = z.Select(v => Math.Exp(v - max)).ToArray();
                var sum = ex.Sum();
                p = ex.Select(v => v / sum).ToArray();
            }
            var choice = p.Select((v, i) => v + (bias is null ? 0 : bias[i])).ToArray();
            var eligible = Enumerable.Range(0, e).ToList();
            if (rule.Groups > 1)
            {
                var per = e / rule.Groups;
                var keptGroups = Enumerable.Range(0, rule.Groups)
                    .OrderByDescending(g => Enumerable.Range(g * per, per).Select(i => choice[i]).OrderByDescending(v => v).Take(2).Sum())
                    .Take(rule.TopKGroups).ToHashSet();
                eligible = eligible.Where(i => keptGroups.Contains(i / per)).ToList();
            }
            var ranked = eligible.OrderByDescending(i => choice[i]).ToList();
            var sel = ranked.Take(k).ToArray();
            if (ranked.Count > k) r.SmallestSelectionGap = Math.Min(r.SmallestSelectionGap, choice[ranked[k - 1]] - choice[ranked[k]]);
            var g = sel.Select(i => p[i]).ToArray();
            if (rule.Renormalize)
            {
                var sum = g.Sum() + (rule.Sigmoid ? 1e-20 : 0);
                g = g.Select(v => v / sum).ToArray();
            }
            g = g.Select(v => v * rule.ScalingFactor).ToArray();

            for (var a = 0; a < k; a++)
            {
                var i = sel[a];
                r.Count[i]++;
                r.ScoreMass[i] += p[i];
                r.GateMass[i] += g[a];
                r.LogitSum[i] += z[i];
                foreach (var j in sel) r.Cosel[i, j]++;
                var (hid, y) = Expert(x, gate[i], up[i], down[i], h, inter);
                var norm = Math.Sqrt(y.Sum(v => v * v));
                r.ReapSum[i] += g[a] * norm;
                r.MaxAbs[i] = Math.Max(r.MaxAbs[i], y.Max(Math.Abs));
                for (var j = 0; j < h; j++) r.OutputSum[i, j] += y[j];
                AddOuter(r.Hin[i], x, 1); AddOuter(r.HinW[i], x, g[a]);
                AddOuter(r.Hd[i], hid, 1); AddOuter(r.HdW[i], hid, g[a]);
            }
            for (var i = 0; i < e; i++)
            {
                var (_, y) = Expert(x, gate[i], up[i], down[i], h, inter);
                for (var j = 0; j < h; j++) r.AllTokenOutputSum[i, j] += y[j];
            }
        }
        return r;
    }

    private static (double[] Hidden, double[] Output) Expert(double[] x, double[] gate, double[] up, double[] down, int h, int inter)
    {
        var hid = new double[inter];
        for (var a = 0; a < inter; a++)
        {
            double gv = 0, uv = 0;
            for (var j = 0; j < h; j++)
            {
                gv += gate[a * h + j] * x[j];
                uv += up[a * h + j] * x[j];
            }
            hid[a] = gv / (1 + Math.Exp(-gv)) * uv;
        }
        var y = new double[h];
        for (var j = 0; j < h; j++)
        {
            double s = 0;
            for (var a = 0; a < inter; a++) s += down[j * inter + a] * hid[a];
            y[j] = s;
        }
        return (hid, y);
    }

    private static void AddOuter(double[,] m, double[] v, double w)
    {
        for (var a = 0; a < v.Length; a++)
            for (var b = 0; b < v.Length; b++) m[a, b] += w * v[a] * v[b];
    }

    private static double[][,] New(int e, int n) => Enumerable.Range(0, e).Select(_ => new double[n, n]).ToArray();

    private static double[] Read(ITensorSource source, string name)
    {
        using var t = source.ToTensor(name, torch.ScalarType.Float32);
        using var c = t.contiguous();
        return c.data<float>().ToArray().Select(v => (double)v).ToArray();
    }
}
