namespace MoECompress.Compression.Calibration;

/// <summary>Tensor names inside profile.safetensors (see <see cref="CalibrationProfile"/>).</summary>
public static class ProfileTensorNames
{
    /// <summary><c>layers.{l}.selection_count</c>: n_i, int64 [E].</summary>
    public static string SelectionCount(int layer) => $"layers.{layer}.selection_count";
    /// <summary><c>layers.{l}.routed_tokens</c>: tokens each expert computed, int64 [E].</summary>
    public static string RoutedTokens(int layer) => $"layers.{layer}.routed_tokens";
    /// <summary><c>layers.{l}.routing_weight_mass</c>: Σ pre-renormalisation scores, float64 [E].</summary>
    public static string RoutingWeightMass(int layer) => $"layers.{layer}.routing_weight_mass";
    /// <summary><c>layers.{l}.gate_weight_mass</c>: Σ final gate weights, float64 [E].</summary>
    public static string GateWeightMass(int layer) => $"layers.{layer}.gate_weight_mass";
    /// <summary><c>layers.{l}.tcess</c>: float64 [E].</summary>
    public static string Tcess(int layer) => $"layers.{layer}.tcess";
    /// <summary><c>layers.{l}.reap</c>: float64 [E].</summary>
    public static string Reap(int layer) => $"layers.{layer}.reap";
    /// <summary><c>layers.{l}.max_abs_output</c>: float64 [E].</summary>
    public static string MaxAbsOutput(int layer) => $"layers.{layer}.max_abs_output";
    /// <summary><c>layers.{l}.coselection</c>: int64 [E, E].</summary>
    public static string Coselection(int layer) => $"layers.{layer}.coselection";
    /// <summary><c>layers.{l}.mean_output</c>: float32 [E, H].</summary>
    public static string MeanOutput(int layer) => $"layers.{layer}.mean_output";
    /// <summary><c>layers.{l}.mean_output_all_tokens</c>: float32 [E, H] (optional).</summary>
    public static string MeanOutputAllTokens(int layer) => $"layers.{layer}.mean_output_all_tokens";
}
