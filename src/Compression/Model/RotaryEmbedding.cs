using TorchSharp;
using static TorchSharp.torch;

namespace MoECompress.Compression.Model;

/// <summary>
/// Rotary position embedding with the scaling schemes of transformers' <c>modeling_rope_utils</c>
/// (default, linear, dynamic NTK, YaRN, Llama 3, LongRoPE). Frequencies are computed in double precision and the
/// angles position·inv_freq in float32, as transformers does. Stateless: dynamic NTK and LongRoPE pick their
/// frequencies from the length of the sequence being run (transformers caches the longest length seen so far).
/// </summary>
public sealed class RotaryEmbedding
{
    /// <param name="dim">Rotated dimensions per head (head_dim, or qk_rope_head_dim for MLA).</param>
    /// <param name="theta">rope_theta.</param>
    /// <param name="scaling">The scaling block (use <see cref="RopeScaling.None"/> for none).</param>
    /// <param name="maxPositionEmbeddings">config.json max_position_embeddings.</param>
    /// <param name="interleaved">
    /// DeepSeek MLA layout: rotate pairs (x[2i], x[2i+1]) by first permuting each head vector to
    /// [x0, x2, …, x1, x3, …] and then applying the rotate-half form (transformers' <c>rope_interleave</c>).
    /// </param>
    public RotaryEmbedding(int dim, double theta, RopeScaling scaling, int maxPositionEmbeddings, bool interleaved = false)
    {
        if (dim <= 0 || dim % 2 != 0) throw new ArgumentOutOfRangeException(nameof(dim), dim, "rotary dimension must be a positive even number");
        if (theta <= 0) throw new ArgumentOutOfRangeException(nameof(theta), theta, "rope_theta must be positive");
        Dim = dim;
        Theta = theta;
        Scaling = scaling;
        MaxPositionEmbeddings = maxPositionEmbeddings;
        Interleaved = interleaved;
        AttentionFactor = ComputeAttentionFactor();
    }

    public int Dim { get; }
    public double Theta { get; }
    public RopeScaling Scaling { get; }
    public int MaxPositionEmbeddings { get; }
    public bool Interleaved { get; }

    /// <summary>Factor applied to cos and sin (YaRN / LongRoPE "attention factor"; 1 otherwise).</summary>
    public double AttentionFactor { get; }

    /// <summary>
    /// The factor on cos and sin for a sequence of <paramref name="sequenceLength"/> tokens: Phi-3.5-MoE's
    /// short_mscale / long_mscale (chosen as the LongRoPE factor lists are) when the config gives them, else
    /// <see cref="AttentionFactor"/>.
    /// </summary>
    public double AttentionFactorFor(int sequenceLength)
    {
        if (Scaling.Type != RopeType.LongRope) return AttentionFactor;
        var mscale = sequenceLength > OriginalContext ? Scaling.LongMscale : Scaling.ShortMscale;
        return mscale ?? AttentionFactor;
    }

    /// <summary>YaRN's mscale formula: 0.1·m·ln(s) + 1 for s &gt; 1, else 1.</summary>
    public static double YarnMscale(double scale, double mscale = 1) => scale <= 1 ? 1.0 : 0.1 * mscale * Math.Log(scale) + 1.0;

    private int OriginalContext => Scaling.OriginalMaxPositionEmbeddings ?? MaxPositionEmbeddings;

    /// <summary>The YaRN / LongRoPE factor: rope_scaling.factor, else max_position_embeddings / original.</summary>
    private double ContextFactor => Scaling.Factor ?? (double)MaxPositionEmbeddings / OriginalContext;

    private double ComputeAttentionFactor()
    {
        switch (Scaling.Type)
        {
            case RopeType.Yarn:
                {
                    if (Scaling.AttentionFactor is { } af) return af;
                    var factor = ContextFactor;
                    if (Scaling.Mscale is { } m && m != 0 && Scaling.MscaleAllDim is { } mAll && mAll != 0)
                        return YarnMscale(factor, m) / YarnMscale(factor, mAll);
                    return YarnMscale(factor);
                }
            case RopeType.LongRope:
                {
                    if (Scaling.AttentionFactor is { } af) return af;
                    var factor = ContextFactor;
                    return factor <= 1 ? 1.0 : Math.Sqrt(1 + Math.Log(factor) / Math.Log(OriginalContext));
                }
            default:
                return 1.0;
        }
    }

    /// <summary>Default frequencies theta^(-2i/d) for a given base.</summary>
    private double[] BaseInverseFrequencies(double theta)
    {
        var half = Dim / 2;
        var inv = new double[half];
        for (var i = 0; i < half; i++) inv[i] = 1.0 / Math.Pow(theta, 2.0 * i / Dim);
        return inv;
    }

    /// <summary>The inverse frequencies (length dim/2) used for a sequence of <paramref name="sequenceLength"/> tokens.</summary>
    public double[] InverseFrequencies(int sequenceLength)
    {
        switch (Scaling.Type)
        {
            case RopeType.Default:
                return BaseInverseFrequencies(Theta);
            case RopeType.Linear:
                return BaseInverseFrequencies(Theta).Select(f => f / Scaling.Factor!.Value).ToArray();
            case RopeType.Dynamic:
                {
                    var max = OriginalContext;
                    var factor = Scaling.Factor!.Value;
                    var theta = Theta;
                    if (sequenceLength > max)
                        theta = Theta * Math.Pow(factor * sequenceLength / max - (factor - 1), Dim / (Dim - 2.0));
                    return BaseInverseFrequencies(theta);
                }
            case RopeType.Yarn:
                return YarnInverseFrequencies();
            case RopeType.Llama3:
                return Llama3InverseFrequencies();
            case RopeType.LongRope:
                {
                    var ext = sequenceLength > OriginalContext ? Scaling.LongFactor! : Scaling.ShortFactor!;
                    if (ext.Count != Dim / 2)
                        throw new Formats.Errors.MoeCompressException(Formats.Errors.ErrorKind.InvalidConfig,
                            $"rope_scaling: longrope factor lists must have {Dim / 2} entries (rotary dim {Dim}), found {ext.Count}");
                    var inv = BaseInverseFrequencies(Theta);
                    for (var i = 0; i < inv.Length; i++) inv[i] /= ext[i];
                    return inv;
                }
            default:
                throw new InvalidOperationException($"unknown rope type {Scaling.Type}");
        }
    }

    private double[] YarnInverseFrequencies()
    {
        var factor = ContextFactor;
        var original = OriginalContext;
        double CorrectionDim(double rotations) =>
            Dim * Math.Log(original / (rotations * 2 * Math.PI)) / (2 * Math.Log(Theta));
        var low = CorrectionDim(Scaling.BetaFast);
        var high = CorrectionDim(Scaling.BetaSlow);
        if (Scaling.Truncate)
        {
            low = Math.Floor(low);
            high = Math.Ceiling(high);
        }
        low = Math.Max(low, 0);
        high = Math.Min(high, Dim - 1);
        if (low == high) high += 0.001;

        var half = Dim / 2;
        var inv = new double[half];
        for (var i = 0; i < half; i++)
        {
            var posFreq = Math.Pow(Theta, 2.0 * i / Dim);
            var extrapolation = 1.0 / posFreq;
            var interpolation = 1.0 / (factor * posFreq);
            var ramp = Math.Clamp((i - low) / (high - low), 0, 1);
            var extrapolationFactor = 1 - ramp;
            inv[i] = interpolation * (1 - extrapolationFactor) + extrapolation * extrapolationFactor;
        }
        return inv;
    }

    private double[] Llama3InverseFrequencies()
    {
        var factor = Scaling.Factor!.Value;
        var oldContext = (double)Scaling.OriginalMaxPositionEmbeddings!.Value;
        var lowFreqWavelen = oldContext / Scaling.LowFreqFactor;
        var highFreqWavelen = oldContext / Scaling.HighFreqFactor;
        var inv = BaseInverseFrequencies(Theta);
        for (var i = 0; i < inv.Length; i++)
        {
            var wavelen = 2 * Math.PI / inv[i];
            if (wavelen > lowFreqWavelen)
                inv[i] /= factor;
            else if (wavelen >= highFreqWavelen)
            {
                var smooth = (oldContext / wavelen - Scaling.LowFreqFactor) / (Scaling.HighFreqFactor - Scaling.LowFreqFactor);
                inv[i] = (1 - smooth) * inv[i] / factor + smooth * inv[i];
            }
        }
        return inv;
    }

    /// <summary>cos/sin tables for positions 0..<paramref name="sequenceLength"/>-1 (float32, [L, dim]).</summary>
    public RotaryTables Tables(int sequenceLength)
    {
        using var scope = NewDisposeScope();
        var inv = InverseFrequencies(sequenceLength).Select(x => (float)x).ToArray();
        var invT = tensor(inv, ScalarType.Float32);
        var pos = ScalarOps.Range(sequenceLength, ScalarType.Float32);
        var freqs = outer(pos, invT);
        var emb = cat(new[] { freqs, freqs }, 1);
        var cosT = emb.cos();
        var sinT = emb.sin();
        var factor = AttentionFactorFor(sequenceLength);
        if (factor != 1.0)
        {
            cosT = cosT.Times(factor);
            sinT = sinT.Times(factor);
        }
        return new RotaryTables(cosT.MoveToOuterDisposeScope(), sinT.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// Rotates <paramref name="x"/> [..., L, dim] with tables [L, dim]: x·cos + rotate_half(x)·sin, after the
    /// interleave permutation when <see cref="Interleaved"/>. Returns a new tensor.
    /// </summary>
    public Tensor Apply(Tensor x, RotaryTables tables) => Apply(x, tables, Interleaved);

    /// <summary>
    /// Static form of <see cref="Apply(Tensor, RotaryTables)"/>. When <paramref name="x"/> is wider than the tables
    /// (partial rotary, GLM-4.5), only its first tables-width dimensions are rotated and the rest pass through.
    /// </summary>
    public static Tensor Apply(Tensor x, RotaryTables tables, bool interleaved)
    {
        using var scope = NewDisposeScope();
        var d = x.shape[^1];
        var rotary = tables.Cos.shape[1];
        if (d < rotary)
            throw new ArgumentException($"rotary tables have dimension {rotary}, tensor has {d}");
        if (d > rotary)
        {
            var rotatedPart = Apply(x.narrow(-1, 0, rotary), tables, interleaved);
            return cat(new[] { rotatedPart, x.narrow(-1, rotary, d - rotary) }, -1).MoveToOuterDisposeScope();
        }
        if (interleaved)
        {
            var shape = x.shape;
            var pairShape = shape[..^1].Concat(new[] { d / 2, 2L }).ToArray();
            x = x.reshape(pairShape).transpose(-1, -2).reshape(shape);
        }
        var x1 = x.narrow(-1, 0, d / 2);
        var x2 = x.narrow(-1, d / 2, d / 2);
        var rotated = cat(new[] { -x2, x1 }, -1);
        var result = (x * tables.Cos).Plus(rotated * tables.Sin);
        return result.MoveToOuterDisposeScope();
    }
}
