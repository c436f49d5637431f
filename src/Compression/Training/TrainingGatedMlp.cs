using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MoECompress.Compression.Training;

/// <summary>
/// A SiLU-gated MLP as Hugging Face DeepseekV3MLP: down_proj(SiLU(gate_proj(x)) ⊙ up_proj(x)), no biases. DeepSeek-V3's
/// dense layers and its (fused) shared experts.
/// </summary>
public sealed class TrainingGatedMlp : nn.Module<Tensor, Tensor>
{
    private readonly bool bf16;

    public Parameter gate_proj, up_proj, down_proj;

    public TrainingGatedMlp(string name, int hidden, int intermediate, bool bf16, Func<long[], Tensor> init, Func<long[], Tensor> initOutput)
        : base(name)
    {
        this.bf16 = bf16;
        gate_proj = new Parameter(init([intermediate, hidden]));
        up_proj = new Parameter(init([intermediate, hidden]));
        down_proj = new Parameter(initOutput([hidden, intermediate]));
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var hidden = nn.functional.silu(TrainingLinear.Apply(x, gate_proj, bf16)) * TrainingLinear.Apply(x, up_proj, bf16);
        return TrainingLinear.Apply(hidden, down_proj, bf16).MoveToOuterDisposeScope();
    }

    /// <summary>The three weights under their Hugging Face names below <paramref name="prefix"/> (e.g. "model.layers.0.mlp.").</summary>
    public IEnumerable<(string Name, Tensor Tensor)> NamedHuggingFaceTensors(string prefix) =>
    [
        (prefix + "gate_proj.weight", gate_proj), (prefix + "up_proj.weight", up_proj), (prefix + "down_proj.weight", down_proj),
    ];
}
