using static TorchSharp.torch;

namespace MoECompress.Compression.Model;

/// <summary>A normalisation over the last dimension of hidden states (<see cref="RmsNorm"/> or <see cref="LayerNorm"/>). Owns its weights.</summary>
public interface INorm : IDisposable
{
    /// <summary>The normalised dimension.</summary>
    long Size { get; }

    /// <summary>Normalises x [..., Size] (float32).</summary>
    Tensor Forward(Tensor x);
}
