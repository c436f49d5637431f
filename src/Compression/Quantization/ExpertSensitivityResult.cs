using System.Text.Json.Nodes;

namespace MoECompress.Compression.Quantization;

/// <summary>
/// ε_{l,i,b} for every MoE layer l, routed expert i and candidate width b: Σ‖ΔY‖² / Σ‖Y‖² over the calibration tokens,
/// where Y is the MoE block's output and ΔY its change when expert i alone is quantized to b bits. Also the routed-token
/// count of each expert and the experts that fell back to RTN.
/// </summary>
public sealed class ExpertSensitivityResult
{
    private readonly Dictionary<int, double[,]> _errors;
    private readonly Dictionary<int, long[]> _tokens;

    internal ExpertSensitivityResult(IReadOnlyList<int> candidates, Dictionary<int, double[,]> errors, Dictionary<int, long[]> tokens,
        IReadOnlyList<QuantizeFallback> fallbacks, double seconds)
    {
        Candidates = candidates;
        _errors = errors;
        _tokens = tokens;
        Fallbacks = fallbacks;
        Seconds = seconds;
    }

    /// <summary>Widths measured, ascending.</summary>
    public IReadOnlyList<int> Candidates { get; }
    /// <summary>MoE layers measured, ascending.</summary>
    public IReadOnlyList<int> Layers => _errors.Keys.Order().ToList();
    /// <summary>Experts that fell back to RTN (GPTQ only), by layer then expert.</summary>
    public IReadOnlyList<QuantizeFallback> Fallbacks { get; }
    /// <summary>Wall-clock seconds of the measurement.</summary>
    public double Seconds { get; }

    /// <summary>Experts per layer.</summary>
    public int NumExperts(int layer) => _errors[layer].GetLength(0);

    /// <summary>ε of one expert at one width.</summary>
    public double Error(int layer, int expert, int bits)
    {
        var b = IndexOf(bits);
        return _errors.TryGetValue(layer, out var e) ? e[expert, b] : throw new KeyNotFoundException($"layer {layer} was not measured");
    }

    /// <summary>ε of one expert at every width (width → error).</summary>
    public IReadOnlyDictionary<int, double> Errors(int layer, int expert) =>
        Candidates.ToDictionary(b => b, b => Error(layer, expert, b));

    /// <summary>Calibration tokens routed to the expert during the measurement.</summary>
    public long RoutedTokens(int layer, int expert) => _tokens[layer][expert];

    private int IndexOf(int bits)
    {
        for (var i = 0; i < Candidates.Count; i++) if (Candidates[i] == bits) return i;
        throw new ArgumentException($"{bits} bits was not measured (widths: {string.Join(", ", Candidates)})", nameof(bits));
    }

    /// <summary>{ candidates, seconds, layers: { "l": [[ε per width] per expert] }, routed_tokens }.</summary>
    public JsonObject ToJsonObject()
    {
        var layers = new JsonObject();
        var tokens = new JsonObject();
        foreach (var l in Layers)
        {
            var e = _errors[l];
            layers[l.ToString()] = new JsonArray(Enumerable.Range(0, e.GetLength(0))
                .Select(i => (JsonNode?)new JsonArray(Enumerable.Range(0, e.GetLength(1)).Select(b => (JsonNode?)e[i, b]).ToArray())).ToArray());
            tokens[l.ToString()] = new JsonArray(_tokens[l].Select(t => (JsonNode?)t).ToArray());
        }
        return new JsonObject
        {
            ["candidates"] = new JsonArray(Candidates.Select(b => (JsonNode?)b).ToArray()),
            ["seconds"] = Math.Round(Seconds, 3),
            ["errors"] = layers,
            ["routed_tokens"] = tokens,
        };
    }
}
