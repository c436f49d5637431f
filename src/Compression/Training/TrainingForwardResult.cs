using static TorchSharp.torch;

namespace MoECompress.Compression.Training;

/// <summary>
/// Output of <see cref="ReferenceTrainingModel.Forward"/>: logits [B, T, V] in fp32 and, per MoE layer (dense layers
/// have none), the router logits / scores [N, E] and selected experts [N, k] (N = B·T, batch-major). The caller owns the
/// tensors.
/// </summary>
public sealed record TrainingForwardResult(Tensor Logits, IReadOnlyList<SparseMoeBlockOutput> Routers);
