namespace MoECompress.Compression.Calibration;

/// <summary>Which input second-moment matrix of a routed expert a <see cref="ExpertHessians"/> entry holds.</summary>
public enum HessianKind
{
    /// <summary>Σ x xᵀ over the tokens routed to the expert, x = gate_proj/up_proj input [H, H].</summary>
    Input,
    /// <summary>Σ g·x xᵀ, each routed token weighted by its gate weight g (MoEQuant) [H, H].</summary>
    InputWeighted,
    /// <summary>Σ h hᵀ over the routed tokens, h = down_proj input act(gate(x))·up(x) [I, I].</summary>
    Down,
    /// <summary>Σ g·h hᵀ, gate-weighted [I, I].</summary>
    DownWeighted,
}
