namespace MoECompress.Formats.Safetensors;

/// <summary>Progress of a <see cref="CheckpointCopier"/> run, reported after each tensor.</summary>
/// <param name="BytesCopied">Tensor bytes written so far.</param>
/// <param name="TotalBytes">Tensor bytes to write in all.</param>
/// <param name="TensorsCopied">Tensors written so far.</param>
/// <param name="TensorCount">Tensors to write in all.</param>
/// <param name="CurrentTensor">The tensor just written.</param>
public readonly record struct CheckpointCopyProgress(long BytesCopied, long TotalBytes, int TensorsCopied, int TensorCount,
    string CurrentTensor);
