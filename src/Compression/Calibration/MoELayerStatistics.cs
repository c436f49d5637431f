using static TorchSharp.torch;

namespace MoECompress.Compression.Calibration;

/// <summary>
/// Calibration statistics of one MoE layer's routed experts over N calibration tokens. With t a token,
/// z_t = x_t·Wᵀ (+ router bias) the router logits, p_t = softmax(z_t) or sigmoid(z_t) the router scores (DeepSeek-V3:
/// without e_score_correction_bias), S_t the token's top-k experts, g_{t,i} the final gate weight of expert i as the
/// block uses it (renormalised and scaled as the model does) and f_i the expert's output:
/// <list type="bullet">
/// <item><see cref="SelectionCount"/> n_i = |{t : i ∈ S_t}|; <see cref="Frequency"/> φ_i = n_i / N.</item>
/// <item><see cref="RoutingWeightMass"/> w_i = Σ_{t: i∈S_t} p_{t,i}, the score before top-k renormalisation (MC-MoE's
/// activation weight); <see cref="GateWeightMass"/> = Σ_{t: i∈S_t} g_{t,i}.</item>
/// <item><see cref="Tcess"/> (PreMoe) = (1/N) Σ_t z_{t,i}·[i ∈ S_t].</item>
/// <item><see cref="Reap"/> S_i = (1/n_i) Σ_{t: i∈S_t} g_{t,i}·‖f_i(x_t)‖₂ (0 when n_i = 0).</item>
/// <item><see cref="MaxAbsOutput"/> = max_{t: i∈S_t} max_j |f_i(x_t)_j| (0 when n_i = 0).</item>
/// <item><see cref="Coselection"/> C_ij = |{t : i ∈ S_t ∧ j ∈ S_t}| (symmetric, diagonal n_i).</item>
/// <item><see cref="MeanOutput"/> = (1/n_i) Σ_{t: i∈S_t} f_i(x_t) [E, H]; optionally
/// <see cref="MeanOutputAllTokens"/> = (1/N) Σ_t f_i(x_t) over every token (HC-SMoE).</item>
/// <item><see cref="RoutedTokens"/>: tokens the expert actually computed (equals n_i).</item>
/// </list>
/// Arrays are indexed by expert (matrices row-major); treat them as read-only. Everything here is a vector or an E×E
/// or E×H matrix (KB–MB per layer): input Hessians (H², I²) are never part of the statistics — they are collected per
/// layer while it is compressed (<see cref="LayerHessianCollector"/>). A saved profile reads the E×H mean outputs only
/// when first asked for (<see cref="MeanOutputLoaded"/>).
/// </summary>
public sealed class MoELayerStatistics
{
    /// <summary>Creates the record, checking every array's length.</summary>
    public MoELayerStatistics(int layer, int numExperts, int topK, int hiddenSize, int intermediateSize, long tokens,
        long[] selectionCount, long[] routedTokens, double[] routingWeightMass, double[] gateWeightMass, double[] tcess,
        double[] reap, double[] maxAbsOutput, long[] coselection, float[] meanOutput, float[]? meanOutputAllTokens)
        : this(layer, numExperts, topK, hiddenSize, intermediateSize, tokens, selectionCount, routedTokens, routingWeightMass,
            gateWeightMass, tcess, reap, maxAbsOutput, coselection, () => meanOutput,
            meanOutputAllTokens is null ? null : () => meanOutputAllTokens)
    {
    }

    /// <summary>Creates the record with the E×H mean outputs read on first use (a saved profile's lazy layers).</summary>
    public MoELayerStatistics(int layer, int numExperts, int topK, int hiddenSize, int intermediateSize, long tokens,
        long[] selectionCount, long[] routedTokens, double[] routingWeightMass, double[] gateWeightMass, double[] tcess,
        double[] reap, double[] maxAbsOutput, long[] coselection, Func<float[]> meanOutput, Func<float[]>? meanOutputAllTokens)
    {
        void Check(int length, long expected, string what)
        {
            if (length != expected) throw new ArgumentException($"layer {layer}: {what} holds {length} values, expected {expected}");
        }
        Check(selectionCount.Length, numExperts, "selection_count");
        Check(routedTokens.Length, numExperts, "routed_tokens");
        Check(routingWeightMass.Length, numExperts, "routing_weight_mass");
        Check(gateWeightMass.Length, numExperts, "gate_weight_mass");
        Check(tcess.Length, numExperts, "tcess");
        Check(reap.Length, numExperts, "reap");
        Check(maxAbsOutput.Length, numExperts, "max_abs_output");
        Check(coselection.Length, (long)numExperts * numExperts, "coselection");
        float[] Checked(Func<float[]> read, string what)
        {
            var values = read();
            Check(values.Length, (long)numExperts * hiddenSize, what);
            return values;
        }
        Layer = layer;
        NumExperts = numExperts;
        TopK = topK;
        HiddenSize = hiddenSize;
        IntermediateSize = intermediateSize;
        Tokens = tokens;
        SelectionCount = selectionCount;
        RoutedTokens = routedTokens;
        RoutingWeightMass = routingWeightMass;
        GateWeightMass = gateWeightMass;
        Tcess = tcess;
        Reap = reap;
        MaxAbsOutput = maxAbsOutput;
        Coselection = coselection;
        _meanOutput = new Lazy<float[]>(() => Checked(meanOutput, "mean_output"));
        _meanOutputAllTokens = meanOutputAllTokens is null ? null : new Lazy<float[]>(() => Checked(meanOutputAllTokens, "mean_output_all_tokens"));
    }

    /// <summary>Decoder layer index.</summary>
    public int Layer { get; }
    /// <summary>E: routed experts.</summary>
    public int NumExperts { get; }
    /// <summary>k: experts chosen per token.</summary>
    public int TopK { get; }
    /// <summary>H.</summary>
    public int HiddenSize { get; }
    /// <summary>I: intermediate size of one routed expert.</summary>
    public int IntermediateSize { get; }
    /// <summary>N: tokens that went through the layer.</summary>
    public long Tokens { get; }
    /// <summary>n_i [E].</summary>
    public long[] SelectionCount { get; }
    /// <summary>Tokens each expert computed [E] (= n_i).</summary>
    public long[] RoutedTokens { get; }
    /// <summary>w_i = Σ p_{t,i} over the tokens selecting i, p before top-k renormalisation [E].</summary>
    public double[] RoutingWeightMass { get; }
    /// <summary>Σ g_{t,i} (final gate weights) over the tokens selecting i [E].</summary>
    public double[] GateWeightMass { get; }
    /// <summary>PreMoe TCESS [E].</summary>
    public double[] Tcess { get; }
    /// <summary>REAP saliency [E].</summary>
    public double[] Reap { get; }
    /// <summary>max |down_proj output| [E].</summary>
    public double[] MaxAbsOutput { get; }
    /// <summary>C [E·E], row-major.</summary>
    public long[] Coselection { get; }
    private readonly Lazy<float[]> _meanOutput;
    private readonly Lazy<float[]>? _meanOutputAllTokens;

    /// <summary>Mean output over routed tokens [E·H], row-major.</summary>
    public float[] MeanOutput => _meanOutput.Value;
    /// <summary>Mean output over all N tokens [E·H], or null when not collected.</summary>
    public float[]? MeanOutputAllTokens => _meanOutputAllTokens?.Value;
    /// <summary>True when <see cref="MeanOutputAllTokens"/> was collected (without reading it).</summary>
    public bool HasMeanOutputAllTokens => _meanOutputAllTokens is not null;
    /// <summary>False until <see cref="MeanOutput"/> has been read (a saved profile reads it on first use).</summary>
    public bool MeanOutputLoaded => _meanOutput.IsValueCreated;

    /// <summary>φ_i = n_i / N (0 when N = 0).</summary>
    public double Frequency(int expert) => Tokens == 0 ? 0 : (double)SelectionCount[expert] / Tokens;

    /// <summary>φ for every expert [E].</summary>
    public double[] Frequencies() => Enumerable.Range(0, NumExperts).Select(Frequency).ToArray();

    /// <summary>C_ij.</summary>
    public long CoselectionCount(int i, int j) => Coselection[(long)i * NumExperts + j];

    /// <summary>Mean output of expert <paramref name="expert"/> over its routed tokens [H].</summary>
    public ReadOnlySpan<float> MeanOutputOf(int expert) => MeanOutput.AsSpan(expert * HiddenSize, HiddenSize);

    /// <summary>A new float32 tensor [E, H] with <see cref="MeanOutput"/> (or <see cref="MeanOutputAllTokens"/>); the caller disposes it.</summary>
    public Tensor MeanOutputTensor(bool allTokens = false)
    {
        var values = allTokens
            ? MeanOutputAllTokens ?? throw new InvalidOperationException($"layer {Layer}: mean outputs over all tokens were not collected")
            : MeanOutput;
        return tensor(values, new long[] { NumExperts, HiddenSize }, ScalarType.Float32);
    }
}
