using MoECompress.Formats.Safetensors;

namespace MoECompress.Compression.Surgery;

/// <summary>How an output tensor of <see cref="ExpertSurgery"/> is produced.</summary>
internal enum SurgeryTensorKind
{
    /// <summary>A tensor the surgery does not touch (attention, norms, shared experts, ...): copied byte for byte.</summary>
    Copy,
    /// <summary>A per-expert tensor of a kept expert under its new number: copied byte for byte.</summary>
    ExpertCopy,
    /// <summary>A per-expert tensor of a merged expert: written from the merged weights.</summary>
    ExpertMerged,
    /// <summary>Router weight / bias / correction bias [E', ...]: one row per output expert.</summary>
    RouterRows,
    /// <summary>A fused expert tensor [E', ...]: one slab per output expert.</summary>
    FusedExperts,
}

/// <summary>One tensor of the output checkpoint and where it comes from.</summary>
/// <param name="Name">Output tensor name.</param>
/// <param name="DType">Stored dtype (always the input's).</param>
/// <param name="Shape">Output shape.</param>
/// <param name="Kind">How it is produced.</param>
/// <param name="Source">Input tensor it is made from (for merged per-expert tensors: the representative's tensor).</param>
/// <param name="Layer">Routed layer, or −1.</param>
/// <param name="OutputExpert">Output expert number for per-expert tensors, or −1.</param>
internal sealed record SurgeryTensor(
    string Name, SafetensorsDType DType, long[] Shape, SurgeryTensorKind Kind, string Source, int Layer = -1, int OutputExpert = -1)
{
    public TensorSpec Spec => new(Name, DType, Shape);
}
