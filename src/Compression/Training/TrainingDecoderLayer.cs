using TorchSharp;
using static TorchSharp.torch;

namespace MoECompress.Compression.Training;

/// <summary>One Mixtral decoder layer: h = x + attn(norm₁(x)); out = h + moe(norm₂(h)).</summary>
public sealed class TrainingDecoderLayer : nn.Module
{
    public TrainingRmsNorm input_layernorm, post_attention_layernorm;
    public TrainingAttention self_attn;
    public TrainingSparseMoeBlock block_sparse_moe;

    public TrainingDecoderLayer(string name, ReferenceModelOptions o, Func<long[], Tensor> init, Func<long[], Tensor> initOutput)
        : base(name)
    {
        input_layernorm = new TrainingRmsNorm("input_layernorm", o.HiddenSize, o.RmsNormEps);
        self_attn = new TrainingAttention("self_attn", o.HiddenSize, o.AttentionHeads, o.KeyValueHeads, o.RopeTheta, o.Bf16Matmuls, init, initOutput);
        post_attention_layernorm = new TrainingRmsNorm("post_attention_layernorm", o.HiddenSize, o.RmsNormEps);
        block_sparse_moe = new TrainingSparseMoeBlock("block_sparse_moe", o.HiddenSize, o.IntermediateSize, o.Experts, o.TopK, o.Bf16Matmuls, init, initOutput);
        RegisterComponents();
    }

    /// <summary>Runs the layer; the MoE block's router tensors come back with the new hidden state.</summary>
    public SparseMoeBlockOutput Forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = x.Plus(self_attn.forward(input_layernorm.forward(x)));
        var moe = block_sparse_moe.Forward(post_attention_layernorm.forward(h));
        var output = h.Plus(moe.Output);
        return new SparseMoeBlockOutput(output.MoveToOuterDisposeScope(), moe.RouterLogits.MoveToOuterDisposeScope(),
            moe.RouterProbabilities.MoveToOuterDisposeScope(), moe.SelectedExperts.MoveToOuterDisposeScope());
    }
}
