namespace MoECompress.Compression.Training;

/// <summary>
/// Unigram language model with add-one (Laplace) smoothing over the whole vocabulary:
/// p(w) = (count(w) + 1) / (N + V). The ignored id (BOS) is neither counted nor meant to be scored.
/// </summary>
public sealed class UnigramModel
{
    private readonly long[] counts;
    private readonly long total;

    private UnigramModel(long[] counts, long total)
    {
        this.counts = counts;
        this.total = total;
    }

    public int VocabularySize => counts.Length;
    public long TokenCount => total;

    public static UnigramModel Fit(IEnumerable<int> tokens, int vocabularySize, int ignoredId)
    {
        var counts = new long[vocabularySize];
        long total = 0;
        foreach (var id in tokens)
        {
            if (id == ignoredId) continue;
            counts[id]++;
            total++;
        }
        return new UnigramModel(counts, total);
    }

    public double LogProbability(int id) => Math.Log((counts[id] + 1.0) / (total + counts.Length));
}
