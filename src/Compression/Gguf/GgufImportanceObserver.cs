using MoECompress.Compression.Model;
using static TorchSharp.torch;

namespace MoECompress.Compression.Gguf;

/// <summary>
/// Collects an importance matrix per routed expert during one calibration pass (as llama.cpp's imatrix does, but per
/// expert slice): for every input column the sum of squares over the tokens routed to that expert: Σ x² of the expert
/// input (the columns of gate_proj and up_proj) and Σ h² of the down_proj input, with the routed-token count. Memory is
/// E·(H + I) floats per MoE layer, independent of the number of tokens.
/// </summary>
public sealed class GgufImportanceObserver : ILayerObserver
{
    private readonly Dictionary<(int Layer, int Expert), ExpertImportance> _experts = new();

    /// <summary>Importance of one expert, or null when no calibration token was routed to it.</summary>
    public ExpertImportance? Get(int layer, int expert) => _experts.GetValueOrDefault((layer, expert));

    /// <summary>Routed calibration tokens of an expert (0 when none).</summary>
    public long Tokens(int layer, int expert) => Get(layer, expert)?.Tokens ?? 0;

    public void OnExpert(ExpertActivation a)
    {
        using var scope = NewDisposeScope();
        var x = a.Input.to(ScalarType.Float32);
        var h = a.Intermediate.to(ScalarType.Float32);
        var sx = x.Squared().sum(0L).data<float>().ToArray();
        var sh = h.Squared().sum(0L).data<float>().ToArray();
        if (!_experts.TryGetValue((a.Layer, a.Expert), out var e))
            _experts[(a.Layer, a.Expert)] = e = new ExpertImportance(new double[sx.Length], new double[sh.Length]);
        for (var i = 0; i < sx.Length; i++) e.InputSquares[i] += sx[i];
        for (var i = 0; i < sh.Length; i++) e.IntermediateSquares[i] += sh[i];
        e.Tokens += a.TokenCount;
    }
}

/// <summary>Σ x² per column of one expert's gate/up input and of its down_proj input, over its routed tokens.</summary>
public sealed class ExpertImportance(double[] inputSquares, double[] intermediateSquares)
{
    public double[] InputSquares { get; } = inputSquares;
    public double[] IntermediateSquares { get; } = intermediateSquares;
    public long Tokens { get; set; }
}
