namespace MoECompress.Tests.Model;

/// <summary>
/// Causal grouped-query attention of one sequence in plain double precision, written from the transformers model
/// descriptions and independent of the engine's tensor code: per-head q/k RMSNorm, rotate-half RoPE on the first
/// <see cref="RotaryDim"/> dimensions of each head (the rest pass through), optional sliding window and per-head
/// attention sinks (an extra logit in the softmax denominator that receives no value), optional output gate (Qwen3-Next:
/// each head's q_proj rows are its query then its gate, and the head's output is multiplied by sigmoid(gate)).
/// </summary>
internal sealed class ReferenceAttention
{
    public required int Heads { get; init; }
    public required int KvHeads { get; init; }
    public required int HeadDim { get; init; }
    public required int RotaryDim { get; init; }
    /// <summary>Inverse frequencies (RotaryDim / 2 of them).</summary>
    public required double[] InverseFrequencies { get; init; }
    /// <summary>Factor on cos and sin (YaRN attention factor; 1 otherwise).</summary>
    public double RopeFactor { get; init; } = 1.0;
    public required double[,] Q { get; init; }
    public required double[,] K { get; init; }
    public required double[,] V { get; init; }
    public required double[,] O { get; init; }
    public double[]? QBias { get; init; }
    public double[]? KBias { get; init; }
    public double[]? VBias { get; init; }
    public double[]? OBias { get; init; }
    public double[]? QNorm { get; init; }
    public double[]? KNorm { get; init; }
    public double NormEps { get; init; }
    public int? SlidingWindow { get; init; }
    /// <summary>Per-head sink logits (GPT-OSS).</summary>
    public double[]? Sinks { get; init; }
    /// <summary>Qwen3-Next gated attention: Q yields 2·HeadDim rows per head, [query, gate].</summary>
    public bool OutputGate { get; init; }

    /// <summary>Attention output for normed inputs x[t] (one sequence, positions 0..L−1).</summary>
    public double[][] Forward(double[][] x)
    {
        int l = x.Length, group = Heads / KvHeads;
        var projected = x.Select(a => Reference.Add(Reference.MatVec(Q, a), QBias ?? new double[Q.GetLength(0)])).ToArray();
        int stride = OutputGate ? 2 * HeadDim : HeadDim;
        double[] Part(double[] row, int offset) =>
            Enumerable.Range(0, Heads).SelectMany(h => row.Skip(h * stride + offset).Take(HeadDim)).ToArray();
        var gates = projected.Select(row => OutputGate ? Part(row, HeadDim) : null).ToArray();
        var q = projected.Select(row => Heads3(Part(row, 0), Heads, QNorm)).ToArray();
        var k = x.Select(a => Heads3(Reference.Add(Reference.MatVec(K, a), KBias ?? new double[K.GetLength(0)]), KvHeads, KNorm)).ToArray();
        var v = x.Select(a => Heads3(Reference.Add(Reference.MatVec(V, a), VBias ?? new double[V.GetLength(0)]), KvHeads, null)).ToArray();
        for (int t = 0; t < l; t++)
        {
            for (int h = 0; h < Heads; h++) q[t][h] = Rotate(q[t][h], t);
            for (int h = 0; h < KvHeads; h++) k[t][h] = Rotate(k[t][h], t);
        }
        double scale = 1 / Math.Sqrt(HeadDim);
        var output = new double[l][];
        for (int i = 0; i < l; i++)
        {
            var merged = new double[Heads * HeadDim];
            for (int h = 0; h < Heads; h++)
            {
                int kvh = h / group;
                var visible = Enumerable.Range(0, i + 1).Where(j => SlidingWindow is not { } w || i - j < w).ToArray();
                var logits = visible.Select(j => Reference.Dot(q[i][h], k[j][kvh]) * scale).ToArray();
                double max = logits.Max();
                if (Sinks is not null) max = Math.Max(max, Sinks[h]);
                var e = logits.Select(z => Math.Exp(z - max)).ToArray();
                double denominator = e.Sum() + (Sinks is null ? 0 : Math.Exp(Sinks[h] - max));
                for (int n = 0; n < visible.Length; n++)
                    for (int d = 0; d < HeadDim; d++)
                        merged[h * HeadDim + d] += e[n] / denominator * v[visible[n]][kvh][d];
            }
            if (gates[i] is { } gate)
                for (int n = 0; n < merged.Length; n++) merged[n] *= Reference.Sigmoid(gate[n]);
            output[i] = Reference.Add(Reference.MatVec(O, merged), OBias ?? new double[O.GetLength(0)]);
        }
        return output;
    }

    private double[][] Heads3(double[] flat, int heads, double[]? norm) =>
        Enumerable.Range(0, heads).Select(h =>
        {
            var head = flat.Skip(h * HeadDim).Take(HeadDim).ToArray();
            return norm is null ? head : Reference.RmsNorm(head, norm, NormEps);
        }).ToArray();

    /// <summary>rotate_half RoPE on the first RotaryDim dimensions: pair (i, i + RotaryDim/2) turns by position·inv_freq[i].</summary>
    private double[] Rotate(double[] head, int position)
    {
        var r = (double[])head.Clone();
        int half = RotaryDim / 2;
        for (int i = 0; i < half; i++)
        {
            double angle = position * InverseFrequencies[i];
            double cos = Math.Cos(angle) * RopeFactor, sin = Math.Sin(angle) * RopeFactor;
            r[i] = head[i] * cos - head[i + half] * sin;
            r[i + half] = head[i + half] * cos + head[i] * sin;
        }
        return r;
    }

    /// <summary>Plain RoPE frequencies theta^(−2i/d).</summary>
    public static double[] DefaultFrequencies(int rotaryDim, double theta) =>
        Enumerable.Range(0, rotaryDim / 2).Select(i => Math.Pow(theta, -2.0 * i / rotaryDim)).ToArray();
}
