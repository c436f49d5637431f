namespace MoECompress.Compression.Evaluation;

/// <summary>
/// How far one decoder layer's output hidden states (the residual stream after layer <see cref="Layer"/>) of the
/// evaluated model are from the base model's, over the scored positions (the rows whose logits are scored).
/// </summary>
/// <param name="Layer">0-based decoder layer.</param>
/// <param name="RelativeError">Frobenius ratio ‖H_model − H_base‖_F / ‖H_base‖_F over all scored positions of all windows
/// (H: the [positions, hidden] matrix of the layer's outputs).</param>
/// <param name="MeanTokenRelativeError">Mean over scored positions of ‖h_model − h_base‖₂ / ‖h_base‖₂ (one ratio per token).</param>
public sealed record LayerError(int Layer, double RelativeError, double MeanTokenRelativeError)
{
    /// <summary>The definition written into reports.</summary>
    public const string Definition =
        "relative error of layer l = ‖H_model − H_base‖_F / ‖H_base‖_F, where H is the [scored positions × hidden] " +
        "matrix of decoder layer l's output hidden states (residual stream, before the final norm) over every scored " +
        "position of every window; per-token mean = mean over scored positions of ‖h_model − h_base‖₂ / ‖h_base‖₂";
}
