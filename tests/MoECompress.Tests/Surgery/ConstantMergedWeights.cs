using MoECompress.Compression.Surgery;
using MoECompress.Formats.Families;
using TorchSharp;

namespace MoECompress.Tests.Surgery;

/// <summary>Merged weights that are all ones (shapes taken from expert 0 of the layer).</summary>
internal sealed class ConstantMergedWeights(ModelCheckpoint input) : IMergedExpertWeights
{
    public torch.Tensor Weight(int layer, int outputExpert, ExpertProjection projection)
    {
        using var reference = input.LoadExpert(layer, 0, projection);
        return torch.ones(reference.shape);
    }
}

/// <summary>
/// Merged weights from a seeded generator, recording every call and the values handed out (kept as float32 copies), and
/// optionally a bias for chosen projections (null for the others, so the surgery averages the members' biases).
/// </summary>
internal sealed class RecordingMergedWeights(ModelCheckpoint input, IReadOnlySet<ExpertProjection>? biasFor = null) : IMergedExpertWeights
{
    public List<(int Layer, int Expert, ExpertProjection Projection, bool Bias)> Calls { get; } = [];
    public Dictionary<(int, int, ExpertProjection), float[]> Weights { get; } = [];
    public Dictionary<(int, int, ExpertProjection), float[]> Biases { get; } = [];

    public torch.Tensor Weight(int layer, int outputExpert, ExpertProjection projection)
    {
        Calls.Add((layer, outputExpert, projection, false));
        using var reference = input.LoadExpert(layer, 0, projection);
        var values = Values(reference.shape[0] * reference.shape[1], layer * 1000 + outputExpert * 10 + (int)projection);
        Weights[(layer, outputExpert, projection)] = values;
        return torch.tensor(values, reference.shape);
    }

    public torch.Tensor? Bias(int layer, int outputExpert, ExpertProjection projection)
    {
        Calls.Add((layer, outputExpert, projection, true));
        if (biasFor is null || !biasFor.Contains(projection)) return null;
        using var reference = ExpertWeights.LoadBias(input.Tensors, input.Family, input.MoE, layer, 0, projection)!;
        var values = Values(reference.shape[0], 7 + layer * 1000 + outputExpert * 10 + (int)projection);
        Biases[(layer, outputExpert, projection)] = values;
        return torch.tensor(values, reference.shape);
    }

    private static float[] Values(long count, int seed)
    {
        var rng = new Random(seed);
        var v = new float[count];
        for (int i = 0; i < v.Length; i++) v[i] = (float)(rng.NextDouble() * 2 - 1);
        return v;
    }
}
