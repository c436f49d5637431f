using MoECompress.Formats.Families;
using static TorchSharp.torch;

namespace MoECompress.Compression.Pruning;

/// <summary>
/// A data-free importance proxy for routed layers without calibration statistics (MTP layers, which the calibration
/// pass does not run): the L2 norm of each expert's router row, ‖W_router[i, :]‖₂. Larger rows give larger logits on
/// average-sized inputs, so the expert wins the top-k more often.
/// </summary>
public static class RouterRowNorms
{
    /// <summary>The name the report gives these scores.</summary>
    public const string ScoreName = "router-row-l2-norm";

    /// <summary>‖W_router[i, :]‖₂ for every routed expert of <paramref name="layer"/>.</summary>
    public static double[] Of(ModelCheckpoint checkpoint, int layer)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        using var scope = NewDisposeScope();
        var name = checkpoint.Family.RouterWeightName(layer, checkpoint.MoE);
        var weight = checkpoint.Tensors.ToTensor(name, ScalarType.Float32);
        var norms = weight.to_type(ScalarType.Float64).Squared().sum(1).sqrt();
        return norms.data<double>().ToArray();
    }
}
