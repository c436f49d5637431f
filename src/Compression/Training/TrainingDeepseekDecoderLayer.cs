using TorchSharp;
using static TorchSharp.torch;

namespace MoECompress.Compression.Training;

/// <summary>
/// One DeepSeek-V3 decoder layer: h = x + MLA(norm₁(x)); out = h + mlp(norm₂(h)), where mlp is a dense
/// <see cref="TrainingGatedMlp"/> (the first first_k_dense_replace layers) or a <see cref="TrainingDeepseekMoeBlock"/>.
/// </summary>
public sealed class TrainingDeepseekDecoderLayer : nn.Module
{
    public TrainingRmsNorm input_layernorm;
    public TrainingLatentAttention self_attn;
    public TrainingRmsNorm post_attention_layernorm;
    public TrainingGatedMlp? dense_mlp;
    public TrainingDeepseekMoeBlock? moe;

    public TrainingDeepseekDecoderLayer(string name, int layer, ReferenceModelOptions o, Func<long[], Tensor> init, Func<long[], Tensor> initOutput)
        : base(name)
    {
        input_layernorm = new TrainingRmsNorm("input_layernorm", o.HiddenSize, o.RmsNormEps);
        self_attn = new TrainingLatentAttention("self_attn", o, init, initOutput);
        post_attention_layernorm = new TrainingRmsNorm("post_attention_layernorm", o.HiddenSize, o.RmsNormEps);
        if (layer < o.FirstDenseLayers)
            dense_mlp = new TrainingGatedMlp("dense_mlp", o.HiddenSize, o.DenseIntermediateSize, o.Bf16Matmuls, init, initOutput);
        else
            moe = new TrainingDeepseekMoeBlock("moe", o, init, initOutput);
        RegisterComponents();
    }

    /// <summary>Runs the layer: the new hidden state, and for a MoE layer its router tensors (Output = the new hidden state; null for a dense layer).</summary>
    public (Tensor Output, SparseMoeBlockOutput? Router) Forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = x.Plus(self_attn.forward(input_layernorm.forward(x)));
        var normed = post_attention_layernorm.forward(h);
        if (moe is null)
            return (h.Plus(dense_mlp!.forward(normed)).MoveToOuterDisposeScope(), null);
        var r = moe.Forward(normed);
        var output = h.Plus(r.Output).MoveToOuterDisposeScope();
        return (output, new SparseMoeBlockOutput(output, r.RouterLogits.MoveToOuterDisposeScope(),
            r.RouterProbabilities.MoveToOuterDisposeScope(), r.SelectedExperts.MoveToOuterDisposeScope()));
    }

    /// <summary>The layer's tensors under their Hugging Face names below <paramref name="prefix"/> ("model.layers.N.").</summary>
    public IEnumerable<(string Name, Tensor Tensor)> NamedHuggingFaceTensors(string prefix)
    {
        yield return (prefix + "input_layernorm.weight", input_layernorm.weight);
        foreach (var nt in self_attn.NamedHuggingFaceTensors(prefix + "self_attn.")) yield return nt;
        yield return (prefix + "post_attention_layernorm.weight", post_attention_layernorm.weight);
        var mlp = moe is not null ? moe.NamedHuggingFaceTensors(prefix + "mlp.") : dense_mlp!.NamedHuggingFaceTensors(prefix + "mlp.");
        foreach (var nt in mlp) yield return nt;
    }
}
