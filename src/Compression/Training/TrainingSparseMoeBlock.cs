using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MoECompress.Compression.Training;

/// <summary>
/// The Mixtral sparse MoE block as Hugging Face MixtralSparseMoeBlock computes it: router logits = x·Gᵀ (G [E, H]),
/// p = softmax(logits) in fp32, top-k of p, weights renormalised to sum 1, and each selected expert
/// e(x) = w2·(SiLU(w1·x) ⊙ w3·x) added with its weight. Experts are stored stacked: w1, w3 [E, I, H] and w2 [E, H, I]
/// (exported as HF <c>experts.{e}.w1/w3/w2</c>). Tokens are dispatched by sorting the selections by expert, then
/// <c>index_select</c> / <c>index_add_</c>, so gradients reach only the experts a token used.
/// </summary>
public sealed class TrainingSparseMoeBlock : nn.Module
{
    private readonly int topK;
    private readonly bool bf16;

    public Parameter gate, w1, w3, w2;

    public TrainingSparseMoeBlock(string name, int hidden, int intermediate, int experts, int topK, bool bf16,
        Func<long[], Tensor> init, Func<long[], Tensor> initOutput) : base(name)
    {
        this.topK = topK;
        this.bf16 = bf16;
        gate = new Parameter(init([experts, hidden]));
        w1 = new Parameter(init([experts, intermediate, hidden]));
        w3 = new Parameter(init([experts, intermediate, hidden]));
        w2 = new Parameter(initOutput([experts, hidden, intermediate]));
        RegisterComponents();
    }

    public SparseMoeBlockOutput Forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0], t = x.shape[1], h = x.shape[2];
        var tokens = x.reshape(b * t, h);
        // The router stays in fp32: its decisions are discrete and bf16 ties would change them.
        var logits = nn.functional.linear(tokens, gate);
        var probabilities = nn.functional.softmax(logits, -1, ScalarType.Float32);
        var (topWeights, selected) = probabilities.topk(topK, dim: -1);
        topWeights = topWeights / topWeights.sum(-1, keepdim: true);
        topWeights = topWeights.to(tokens.dtype);

        var output = RoutedExperts(tokens, selected, topWeights, w1, w3, w2, bf16);
        return new SparseMoeBlockOutput(
            output.view(b, t, h).MoveToOuterDisposeScope(),
            logits.MoveToOuterDisposeScope(),
            probabilities.MoveToOuterDisposeScope(),
            selected.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// Σ over each token's selected experts of weight · w2_e·(SiLU(w1_e·x) ⊙ w3_e·x) for tokens [N, H], selected expert ids
    /// [N, k] and their weights [N, k] (in the tokens' dtype), with stacked experts w1, w3 [E, I, H] and w2 [E, H, I].
    /// Selections are sorted by expert (stable) and each expert runs once on its tokens; gradients reach only the experts
    /// a token used. Temporaries and the result [N, H] belong to the caller's dispose scope.
    /// </summary>
    internal static Tensor RoutedExperts(Tensor tokens, Tensor selected, Tensor weights, Tensor w1, Tensor w3, Tensor w2, bool bf16)
    {
        long experts = w1.shape[0], topK = selected.shape[1];
        var flatExperts = selected.flatten();
        var (_, order) = flatExperts.sort(stable: true);
        var counts = torch.bincount(flatExperts, minlength: experts).data<long>().ToArray();
        var tokenOfSelection = order.FloorOver(topK);
        var weightOfSelection = weights.flatten().index_select(0, order);

        var output = torch.zeros_like(tokens);
        var w1All = bf16 ? w1.to(ScalarType.BFloat16) : w1;
        var w3All = bf16 ? w3.to(ScalarType.BFloat16) : w3;
        var w2All = bf16 ? w2.to(ScalarType.BFloat16) : w2;
        long start = 0;
        for (int e = 0; e < experts; e++)
        {
            long count = counts[e];
            if (count == 0) continue;
            var index = tokenOfSelection.narrow(0, start, count);
            var xe = tokens.index_select(0, index);
            if (bf16) xe = xe.to(ScalarType.BFloat16);
            var hidden = nn.functional.silu(nn.functional.linear(xe, w1All[e])) * nn.functional.linear(xe, w3All[e]);
            var ye = nn.functional.linear(hidden, w2All[e]);
            if (bf16) ye = ye.to(ScalarType.Float32);
            ye = ye * weightOfSelection.narrow(0, start, count).unsqueeze(1);
            output.IndexAdd_(0, index, ye);
            start += count;
        }
        return output;
    }
}
