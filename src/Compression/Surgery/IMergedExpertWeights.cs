using MoECompress.Formats.Families;
using static TorchSharp.torch;

namespace MoECompress.Compression.Surgery;

/// <summary>
/// Supplies the weights of merged output experts while <see cref="ExpertSurgery"/> writes them, one layer at a time, so
/// that no more than one layer's merged experts are ever in memory.
/// </summary>
public interface IMergedExpertWeights
{
    /// <summary>
    /// Float32 [out, in] weight of projection <paramref name="projection"/> (Gate, Up or Down) of output expert
    /// <paramref name="outputExpert"/> in MoE layer <paramref name="layer"/>. The caller disposes the result.
    /// Called only for experts with <see cref="OutputExpert.Merged"/>; calls for one layer come together, layers in
    /// increasing order, so an implementation may compute a whole layer at once and release it at the next layer.
    /// </summary>
    Tensor Weight(int layer, int outputExpert, ExpertProjection projection);

    /// <summary>
    /// Float32 [out] bias of projection <paramref name="projection"/> of merged output expert <paramref name="outputExpert"/>,
    /// for families whose experts have biases (GPT-OSS). Null (the default) lets <see cref="ExpertSurgery"/> use the
    /// member-weighted average Σ_m w_m · bias_m with the normalised <see cref="OutputExpert.MemberWeights"/>. The caller
    /// disposes the result. Called, like <see cref="Weight"/>, only for merged experts, one layer at a time.
    /// </summary>
    Tensor? Bias(int layer, int outputExpert, ExpertProjection projection) => null;
}
