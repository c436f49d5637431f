using TorchSharp;

namespace MoECompress.Compression.Model;

/// <summary>
/// cos and sin tables [L, rotary_dim] (float32) for positions 0..L-1, already multiplied by the attention factor of
/// the scaling scheme. Owns both tensors.
/// </summary>
public sealed class RotaryTables : IDisposable
{
    public RotaryTables(torch.Tensor cos, torch.Tensor sin)
    {
        Cos = cos;
        Sin = sin;
    }

    public torch.Tensor Cos { get; }
    public torch.Tensor Sin { get; }
    /// <summary>Number of positions.</summary>
    public long Length => Cos.shape[0];

    public void Dispose()
    {
        Cos.Dispose();
        Sin.Dispose();
    }
}
