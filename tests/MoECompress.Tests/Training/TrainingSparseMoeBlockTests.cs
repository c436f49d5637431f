using MoECompress.Compression.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace MoECompress.Tests.Training;

public class TrainingSparseMoeBlockTests
{
    private static Tensor Init(long[] shape, Generator g) => torch.randn(shape, generator: g).mul_(0.5);

    [Fact]
    public void MatchesTheHuggingFaceFormulaTokenByToken()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(5);
        using var block = new TrainingSparseMoeBlock("moe", hidden: 8, intermediate: 6, experts: 4, topK: 2, bf16: false,
            s => Init(s, g), s => Init(s, g));
        var x = torch.randn([2, 5, 8], generator: g);
        using var noGrad = no_grad();
        var result = block.Forward(x);
        var tokens = x.reshape(10, 8);
        for (int n = 0; n < 10; n++)
        {
            // HF MixtralSparseMoeBlock: softmax over the router logits, top-2, renormalise, Σ w·w2(silu(w1 x) ⊙ w3 x).
            var xt = tokens[n];
            var probs = torch.softmax(torch.mv(block.gate, xt), 0).data<float>().ToArray();
            var order = Enumerable.Range(0, 4).OrderByDescending(e => probs[e]).Take(2).ToArray();
            double norm = probs[order[0]] + probs[order[1]];
            var expected = torch.zeros(8);
            foreach (var e in order)
            {
                var h = nn.functional.silu(torch.mv(block.w1[e], xt)) * torch.mv(block.w3[e], xt);
                expected += torch.mv(block.w2[e], h) * (probs[e] / norm);
            }
            var actual = result.Output.reshape(10, 8)[n];
            Assert.True(torch.allclose(actual, expected, rtol: 1e-5, atol: 1e-6), $"token {n} differs");
            var chosen = result.SelectedExperts[n].data<long>().ToArray().Order().ToArray();
            Assert.Equal(order.Select(e => (long)e).Order().ToArray(), chosen);
        }
    }

    [Fact]
    public void GradientsMatchFiniteDifferences()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(9);
        using var block = new TrainingSparseMoeBlock("moe", hidden: 4, intermediate: 3, experts: 3, topK: 2, bf16: false,
            s => Init(s, g).to(ScalarType.Float64), s => Init(s, g).to(ScalarType.Float64));
        var x = torch.randn([1, 3, 4], generator: g).to(ScalarType.Float64);
        Tensor Loss() => block.Forward(x).Output.pow(2).sum();
        Loss().backward();
        var analytic = block.w2.grad!.clone();
        using var noGrad = no_grad();
        var flat = block.w2.view(-1);
        var numeric = torch.zeros_like(flat);
        const double h = 1e-6;
        for (int i = 0; i < flat.shape[0]; i++)
        {
            double orig = flat[i].item<double>();
            flat[i] = orig + h; double up = Loss().item<double>();
            flat[i] = orig - h; double down = Loss().item<double>();
            flat[i] = orig;
            numeric[i] = (up - down) / (2 * h);
        }
        Assert.True(torch.allclose(analytic.view(-1), numeric, rtol: 1e-5, atol: 1e-7));
    }
}
