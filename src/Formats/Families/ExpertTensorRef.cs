namespace MoECompress.Formats.Families;

/// <summary>How a routed expert's tensor is laid out on disk.</summary>
public enum ExpertLayout
{
    /// <summary>One 2-D tensor per expert and projection, [out, in].</summary>
    PerExpert,
    /// <summary>A 3-D tensor [E, out, in]; the expert's matrix is slice <c>FusedIndex</c> of dimension 0.</summary>
    Fused,
    /// <summary>A 3-D tensor [E, in, out] (GPT-OSS): the slice must be transposed to get [out, in].</summary>
    FusedTransposed,
}

/// <summary>
/// Where the weight of one projection of one routed expert lives. For fused gate+up tensors, <see cref="RowStart"/>
/// and <see cref="RowCount"/> select the part of the output dimension (gate or up); when <see cref="Interleaved"/>
/// is set (GPT-OSS) gate and up rows alternate (gate = even rows, up = odd rows) instead.
/// </summary>
public sealed record ExpertTensorRef(
    string TensorName,
    ExpertLayout Layout,
    int? FusedIndex = null,
    long RowStart = 0,
    long RowCount = -1,
    bool Interleaved = false,
    string? BiasName = null);
