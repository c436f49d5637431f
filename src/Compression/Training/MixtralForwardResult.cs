using static TorchSharp.torch;

namespace MoECompress.Compression.Training;

/// <summary>
/// Output of <see cref="MixtralTrainingModel.Forward"/>: logits [B, T, V] in fp32 and, per layer, the router
/// logits / probabilities [N, E] and selected experts [N, k] (N = B·T). The caller owns the tensors.
/// </summary>
public sealed record MixtralForwardResult(Tensor Logits, IReadOnlyList<SparseMoeBlockOutput> Routers);
