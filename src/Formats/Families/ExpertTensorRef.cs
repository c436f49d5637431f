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
    /// <summary>
    /// GPT-OSS MXFP4 on disk: <c>*_blocks</c> U8 [E, out, in/32, 16] (two FP4 E2M1 values per byte, low nibble first) and
    /// <c>*_scales</c> U8 [E, out, in/32] (scale = 2^(u8−127)), named by <see cref="ExpertTensorRef.ScalesName"/>.
    /// Decoded, slice <c>FusedIndex</c> is the expert's [out, in] matrix (no transpose).
    /// </summary>
    FusedMxfp4,
}

/// <summary>
/// Where the weight of one projection of one routed expert lives. For fused gate+up tensors, <see cref="RowStart"/>
/// and <see cref="RowCount"/> select the part of the output dimension (gate or up); when <see cref="Interleaved"/>
/// is set (GPT-OSS) gate and up rows alternate (gate = even rows, up = odd rows) instead: the rows taken are then
/// <c>RowStart, RowStart+2, …</c> (<see cref="RowCount"/> of them), with <see cref="RowStart"/> 0 for gate and 1 for up.
/// <see cref="RowCount"/> −1 means every row. <see cref="BiasName"/> names the expert bias tensor ([E, out] for fused
/// layouts; the same row selection applies), <see cref="ScalesName"/> the MXFP4 scales of a <see cref="ExpertLayout.FusedMxfp4"/> weight.
/// </summary>
public sealed record ExpertTensorRef(
    string TensorName,
    ExpertLayout Layout,
    int? FusedIndex = null,
    long RowStart = 0,
    long RowCount = -1,
    bool Interleaved = false,
    string? BiasName = null,
    string? ScalesName = null);
