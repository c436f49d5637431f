using MoECompress.Compression.Evaluation;

namespace MoECompress.Compression.Demo;

/// <summary>One compressed version of the demo model and its held-out quality against the original, per domain.</summary>
/// <param name="Name">pruned, merged or quantized.</param>
/// <param name="Description">What was done, in a few words.</param>
/// <param name="Directory">Where the checkpoint was written.</param>
/// <param name="TensorBytes">Size of its safetensors files.</param>
/// <param name="Domains">Evaluation against the original on each held-out domain.</param>
public sealed record DemoCompressedModel(string Name, string Description, string Directory, long TensorBytes,
    IReadOnlyList<(string Domain, EvaluationReport Report)> Domains);
