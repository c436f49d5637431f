using TorchSharp;
using static TorchSharp.torch;

namespace MoECompress.Compression.Training;

/// <summary>RMSNorm exactly as Hugging Face MixtralRMSNorm: computed in fp32, x·rsqrt(mean(x²)+eps)·weight.</summary>
public sealed class TrainingRmsNorm : nn.Module<Tensor, Tensor>
{
    private readonly double eps;

    /// <summary>Scale vector [hidden] (HF <c>*.weight</c> of a layer norm), initialised to ones.</summary>
    public TorchSharp.Modules.Parameter weight;

    public TrainingRmsNorm(string name, long hidden, double eps) : base(name)
    {
        this.eps = eps;
        weight = new TorchSharp.Modules.Parameter(torch.ones(hidden, dtype: ScalarType.Float32));
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        var x32 = x.to(ScalarType.Float32);
        var variance = x32.Power(2).mean([-1L], keepdim: true);
        var normed = x32 * torch.rsqrt(variance.Plus(eps));
        return (weight * normed.to(x.dtype)).MoveToOuterDisposeScope();
    }
}
