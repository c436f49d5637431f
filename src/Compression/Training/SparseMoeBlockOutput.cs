using static TorchSharp.torch;

namespace MoECompress.Compression.Training;

/// <summary>
/// Result of one sparse MoE block: the output [B, T, H], the router logits [N, E] (N = B·T tokens), the router
/// probabilities (softmax of the logits, fp32) and the selected expert ids [N, k]. The caller owns all four tensors.
/// </summary>
public sealed record SparseMoeBlockOutput(Tensor Output, Tensor RouterLogits, Tensor RouterProbabilities, Tensor SelectedExperts);
