using MoECompress.Compression.Model;

namespace MoECompress.Tests.Calibration;

/// <summary>Records the input of every MoE block (post-attention-normed hidden states), per layer and sequence.</summary>
internal sealed class MoEInputCapture : ILayerObserver
{
    /// <summary>layer → sequence → [L·H] float32 rows.</summary>
    public SortedDictionary<int, SortedDictionary<int, float[]>> Inputs { get; } = new();
    public int HiddenSize { get; private set; }

    public void OnMoEBlock(MoEBlockActivation activation)
    {
        using var scope = TorchSharp.torch.NewDisposeScope();
        HiddenSize = (int)activation.Input.shape[1];
        var values = activation.Input.contiguous().data<float>().ToArray();
        var batch = activation.Batch;
        var per = batch.SequenceLength * HiddenSize;
        if (!Inputs.TryGetValue(activation.Layer, out var layer)) Inputs[activation.Layer] = layer = new();
        for (var b = 0; b < batch.SequenceIndices.Count; b++)
            layer[batch.SequenceIndices[b]] = values.AsSpan(b * per, per).ToArray();
    }

    /// <summary>Token rows of a layer in sequence order: row r = [H] doubles.</summary>
    public IReadOnlyList<double[]> Tokens(int layer)
    {
        var rows = new List<double[]>();
        foreach (var seq in Inputs[layer].Values)
            for (var at = 0; at < seq.Length; at += HiddenSize)
                rows.Add(seq.AsSpan(at, HiddenSize).ToArray().Select(v => (double)v).ToArray());
        return rows;
    }
}
