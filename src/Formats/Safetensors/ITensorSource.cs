using TorchSharp;

namespace MoECompress.Formats.Safetensors;

/// <summary>
/// Read access to named tensors, whether they live in one safetensors file or a sharded checkpoint.
/// Implementations memory-map their files; nothing is loaded until asked for.
/// </summary>
public interface ITensorSource
{
    /// <summary>Tensor names in a stable order (index order for sharded checkpoints, header order for one file).</summary>
    IReadOnlyList<string> Names { get; }

    bool Contains(string name);

    /// <summary>Header entry of a tensor; throws <see cref="Errors.CheckpointFormatException"/> naming the tensor if absent.</summary>
    TensorInfo GetInfo(string name);

    /// <summary>Zero-copy view of a tensor's raw little-endian bytes (valid while the source is open; ≤ 2 GiB).</summary>
    ReadOnlySpan<byte> GetBytes(string name);

    /// <summary>
    /// A new TorchSharp tensor holding a copy of the data (F8 decoded by hand). With <paramref name="as"/> the values are
    /// converted to that type. The caller owns (disposes) the result.
    /// </summary>
    torch.Tensor ToTensor(string name, torch.ScalarType? @as = null);
}
