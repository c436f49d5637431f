using TorchSharp;
using static TorchSharp.torch;

namespace MoECompress.Compression.Model;

/// <summary>
/// A gated MLP: down(act(gate(x)) · up(x)). Used for routed experts, shared experts and dense MLP layers.
/// Weights are [out, in] tensors owned by this object (disposed with it); biases are optional. Weights stored in
/// another dtype than the input (bf16 experts, see <see cref="ModelEngine.KeepExpertWeightsInBFloat16"/>) are
/// converted to the input's dtype for each call, so compute stays float32.
/// </summary>
public sealed class GatedMlp : IDisposable
{
    /// <summary>Activation names accepted (config.json hidden_act).</summary>
    public static IReadOnlyList<string> SupportedActivations { get; } =
        new[] { "silu", "swish", "gelu", "gelu_pytorch_tanh", "gelu_new", "gelu_fast", "relu" };

    /// <summary>
    /// GPT-OSS experts: g = min(gate, limit), u = clamp(up, ±limit), h = (u + 1) · g · sigmoid(1.702 · g), with
    /// limit <see cref="GptOssSwigluLimit"/>. Not a config hidden_act: the engine picks it for model_type gpt_oss.
    /// </summary>
    public const string GptOssSwiglu = "gpt_oss_swiglu";
    /// <summary>The clamp of <see cref="GptOssSwiglu"/> (config swiglu_limit).</summary>
    public const double GptOssSwigluLimit = 7.0;
    private const double GptOssSwigluAlpha = 1.702;

    /// <param name="gate">gate_proj weight [I, H].</param>
    /// <param name="up">up_proj weight [I, H].</param>
    /// <param name="down">down_proj weight [H, I].</param>
    /// <param name="activation">hidden_act name.</param>
    public GatedMlp(Tensor gate, Tensor up, Tensor down, string activation = "silu",
        Tensor? gateBias = null, Tensor? upBias = null, Tensor? downBias = null)
    {
        if (gate.dim() != 2 || up.dim() != 2 || down.dim() != 2)
            throw new ArgumentException("gated MLP weights must be 2-D [out, in]");
        if (!gate.shape.SequenceEqual(up.shape) || down.shape[0] != gate.shape[1] || down.shape[1] != gate.shape[0])
            throw new ArgumentException(
                $"gated MLP shapes disagree: gate [{string.Join(",", gate.shape)}], up [{string.Join(",", up.shape)}], down [{string.Join(",", down.shape)}]");
        if (!SupportedActivations.Contains(activation) && activation != GptOssSwiglu)
            throw new ArgumentException($"activation '{activation}' is not supported", nameof(activation));
        Gate = gate;
        Up = up;
        Down = down;
        GateBias = gateBias;
        UpBias = upBias;
        DownBias = downBias;
        Activation = activation;
    }

    public Tensor Gate { get; }
    public Tensor Up { get; }
    public Tensor Down { get; }
    public Tensor? GateBias { get; }
    public Tensor? UpBias { get; }
    public Tensor? DownBias { get; }
    public string Activation { get; }
    public long HiddenSize => Gate.shape[1];
    public long IntermediateSize => Gate.shape[0];

    /// <summary>down(act(gate(x)) · up(x)) for x [..., H].</summary>
    public Tensor Forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = Intermediate(x);
        return nn.functional.linear(h, As(Down, x), AsOptional(DownBias, x)).MoveToOuterDisposeScope();
    }

    /// <summary>The down_proj input act(gate(x)) · up(x) [..., I] and the output [..., H].</summary>
    public (Tensor Intermediate, Tensor Output) ForwardWithIntermediate(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = Intermediate(x);
        var y = nn.functional.linear(h, As(Down, x), AsOptional(DownBias, x));
        return (h.MoveToOuterDisposeScope(), y.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// The compressed-experts form (see <see cref="Substitution.CompressedMoEForward"/>): h = act(gate(x ⊙ gateScale)) ·
    /// up(x ⊙ upScale) ⊙ intermediateScale and y = down(h), for per-row scales [..., H], [..., H], [..., I].
    /// </summary>
    public (Tensor Intermediate, Tensor Output) ForwardModulated(Tensor x, Tensor gateScale, Tensor upScale, Tensor intermediateScale)
    {
        using var scope = NewDisposeScope();
        var g = nn.functional.linear(x * gateScale, As(Gate, x), AsOptional(GateBias, x));
        var u = nn.functional.linear(x * upScale, As(Up, x), AsOptional(UpBias, x));
        var h = Activate(g, Activation) * u * intermediateScale;
        var y = nn.functional.linear(h, As(Down, x), AsOptional(DownBias, x));
        return (h.MoveToOuterDisposeScope(), y.MoveToOuterDisposeScope());
    }

    private Tensor Intermediate(Tensor x)
    {
        var g = nn.functional.linear(x, As(Gate, x), AsOptional(GateBias, x));
        var u = nn.functional.linear(x, As(Up, x), AsOptional(UpBias, x));
        if (Activation == GptOssSwiglu)
        {
            g = g.AtMost(GptOssSwigluLimit);
            u = u.ClampTo(-GptOssSwigluLimit, GptOssSwigluLimit);
            return u.Plus(1) * (g * g.Times(GptOssSwigluAlpha).sigmoid());
        }
        return Activate(g, Activation) * u;
    }

    private static Tensor As(Tensor w, Tensor x) => w.dtype == x.dtype ? w : w.to(x.dtype);

    private static Tensor? AsOptional(Tensor? w, Tensor x) => w is null ? null : As(w, x);

    /// <summary>Applies a hidden_act activation.</summary>
    public static Tensor Activate(Tensor x, string activation) => activation switch
    {
        "silu" or "swish" => nn.functional.silu(x),
        "gelu" => nn.functional.gelu(x),
        "gelu_pytorch_tanh" or "gelu_new" or "gelu_fast" => nn.functional.gelu(x, TorchSharp.Modules.GELU.Approximate.tanh),
        "relu" => nn.functional.relu(x),
        _ => throw new ArgumentException($"activation '{activation}' is not supported", nameof(activation)),
    };

    /// <summary>A copy with its own weights (same types).</summary>
    public GatedMlp Clone() => new(Gate.clone(), Up.clone(), Down.clone(), Activation, GateBias?.clone(), UpBias?.clone(), DownBias?.clone());

    public void Dispose()
    {
        Gate.Dispose();
        Up.Dispose();
        Down.Dispose();
        GateBias?.Dispose();
        UpBias?.Dispose();
        DownBias?.Dispose();
    }
}
