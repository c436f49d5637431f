using TorchSharp;
using static TorchSharp.torch;

namespace MoECompress.Compression.Training;

/// <summary>
/// Held-out evaluation of a <see cref="ReferenceTrainingModel"/> per domain, with the training model's own forward in
/// eval mode (fp32, no gradients): perplexity, an add-one-smoothed unigram baseline fitted on the domain's training
/// split with the same tokenizer, and per-layer expert usage.
/// <para>Protocol: the held-out text is chunked and tokenized exactly as for training (<see cref="TextChunker"/>,
/// BOS before each chunk); the stream is cut into consecutive windows of T+1 tokens overlapping by one (every token
/// after the first is a target once, with up to T tokens of context from its window); targets equal to BOS are not
/// scored (neither by the model nor by the unigram). Expert usage counts the top-k selections at every input
/// position.</para>
/// </summary>
public static class ReferenceModelEvaluator
{
    public static ReferenceEvaluationReport Evaluate(ReferenceTrainingModel model, SentencePieceEncoder encoder,
        string heldOutDirectory, string trainDirectory, IReadOnlyList<string> domains, int chunkCharacters = 2000,
        int batchSize = 8, IProgress<string>? progress = null, CancellationToken ct = default)
    {
        var results = new List<DomainEvaluation>();
        foreach (var domain in domains)
        {
            var held = encoder.EncodeDomain(domain, ReadLines(Path.Combine(heldOutDirectory, domain + ".txt")), chunkCharacters, ct);
            var train = encoder.EncodeDomain(domain, ReadLines(Path.Combine(trainDirectory, domain + ".txt")), chunkCharacters, ct);
            var unigram = UnigramModel.Fit(train.Tokens, (int)model.VocabularySize, encoder.BosId);
            var result = EvaluateTokens(model, domain, held.Tokens, encoder.BosId, unigram, batchSize, ct);
            progress?.Report($"{domain}: perplexity {result.Perplexity:F2}, unigram {result.UnigramPerplexity:F1} on {result.ScoredTokens:N0} tokens");
            results.Add(result);
        }
        return new ReferenceEvaluationReport(results, model.MoELayers, model.Options.Experts);
    }

    /// <summary>Scores one token stream (see the class remarks for the protocol).</summary>
    public static DomainEvaluation EvaluateTokens(ReferenceTrainingModel model, string domain, int[] tokens, int bosId,
        UnigramModel unigram, int batchSize = 8, CancellationToken ct = default)
    {
        int t = model.Options.SequenceLength;
        int layers = model.MoELayers, experts = model.Options.Experts;
        var usage = new long[layers, experts];
        double nll = 0, unigramNll = 0;
        long scored = 0;
        // Consecutive windows of T+1 tokens sharing one token; full windows are batched, a final shorter one runs alone.
        var batches = new List<(List<int> Starts, int Length)>();
        var full = new List<int>();
        int s0 = 0;
        for (; s0 + t < tokens.Length; s0 += t) full.Add(s0);
        for (int i = 0; i < full.Count; i += batchSize) batches.Add((full.Skip(i).Take(batchSize).ToList(), t));
        if (tokens.Length - 1 - s0 > 0) batches.Add(([s0], tokens.Length - 1 - s0));
        model.eval();
        using var noGrad = no_grad();
        foreach (var (group, len) in batches)
        {
            ct.ThrowIfCancellationRequested();
            using var scope = NewDisposeScope();
            var ids = new long[group.Count * (len + 1)];
            for (int r = 0; r < group.Count; r++)
                for (int i = 0; i <= len; i++) ids[r * (len + 1) + i] = tokens[group[r] + i];
            var all = torch.tensor(ids, [group.Count, len + 1], ScalarType.Int64);
            var input = all.narrow(1, 0, len);
            var target = all.narrow(1, 1, len).reshape(-1);
            var forward = model.Forward(input);
            var logProbs = nn.functional.log_softmax(forward.Logits.view(-1, forward.Logits.shape[^1]), -1);
            var picked = logProbs.gather(1, target.unsqueeze(1)).squeeze(1);
            var mask = target.NotEqualTo(bosId);
            nll -= picked.masked_select(mask).to(ScalarType.Float64).sum().item<double>();
            var kept = target.masked_select(mask).data<long>().ToArray();
            scored += kept.Length;
            foreach (var id in kept) unigramNll -= unigram.LogProbability((int)id);
            for (int l = 0; l < layers; l++)
            {
                var counts = torch.bincount(forward.Routers[l].SelectedExperts.flatten(), minlength: experts).data<long>().ToArray();
                for (int e = 0; e < experts; e++) usage[l, e] += counts[e];
            }
        }
        if (scored == 0)
            throw new MoECompress.Formats.Errors.MoeCompressException(MoECompress.Formats.Errors.ErrorKind.Usage,
                $"held-out text of domain '{domain}' has no tokens to score");
        var fractions = new double[layers][];
        for (int l = 0; l < layers; l++)
        {
            long total = 0;
            for (int e = 0; e < experts; e++) total += usage[l, e];
            fractions[l] = Enumerable.Range(0, experts).Select(e => (double)usage[l, e] / total).ToArray();
        }
        return new DomainEvaluation(domain, scored, Math.Exp(nll / scored), Math.Exp(unigramNll / scored), fractions);
    }

    private static IEnumerable<string> ReadLines(string path) => File.Exists(path)
        ? File.ReadLines(path)
        : throw new MoECompress.Formats.Errors.MoeCompressException(MoECompress.Formats.Errors.ErrorKind.Usage, $"text file '{path}' does not exist");
}
