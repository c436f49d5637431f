namespace MoECompress.Compression.Training;

/// <summary>
/// Training windows of length T+1 (inputs = first T, targets = last T) cut without overlap from each domain's token
/// stream, and a deterministic order over them: every epoch is a fresh SplitMix64 shuffle (seeded with seed + epoch)
/// of all windows of all domains. Batch b of the run is windows [b·B, b·B + B) of that endless sequence.
/// </summary>
public sealed class TrainingCorpus
{
    private readonly List<(int Domain, int Offset)> windows = new();
    private readonly IReadOnlyList<DomainTokens> domains;
    private readonly int windowLength;
    private readonly long seed;
    private List<int> order = new();
    private int orderEpoch = -1;

    /// <param name="repeats">Per domain, how many times each of its windows appears in an epoch (null: once).</param>
    public TrainingCorpus(IReadOnlyList<DomainTokens> domains, int sequenceLength, long seed, IReadOnlyList<int>? repeats = null)
    {
        this.domains = domains;
        windowLength = sequenceLength + 1;
        this.seed = seed;
        for (int d = 0; d < domains.Count; d++)
            for (int r = 0; r < (repeats?[d] ?? 1); r++)
                for (int offset = 0; offset + windowLength <= domains[d].Tokens.Length; offset += sequenceLength)
                    windows.Add((d, offset));
        if (windows.Count == 0)
            throw new MoECompress.Formats.Errors.MoeCompressException(MoECompress.Formats.Errors.ErrorKind.Usage,
                $"the training text holds fewer than {windowLength} tokens: nothing to train on");
    }

    public IReadOnlyList<DomainTokens> Domains => domains;
    public int WindowCount => windows.Count;
    public long TokenCount => domains.Sum(d => (long)d.Tokens.Length);

    /// <summary>SHA-256 (hex) of the domains' names and token streams, in order: what a resumed run must train on again.</summary>
    public string ContentSha256()
    {
        using var hash = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
        foreach (var d in domains)
        {
            hash.AppendData(System.Text.Encoding.UTF8.GetBytes(d.Domain + "\n" + d.Tokens.Length + "\n"));
            hash.AppendData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(d.Tokens.AsSpan()));
        }
        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    /// <summary>Windows per domain (index = domain order).</summary>
    public int[] WindowsPerDomain() => Enumerable.Range(0, domains.Count).Select(d => windows.Count(w => w.Domain == d)).ToArray();

    /// <summary>The token ids of batch <paramref name="step"/>: <paramref name="batchSize"/> rows of T+1 ids, row-major.</summary>
    public long[] Batch(int step, int batchSize)
    {
        var ids = new long[(long)batchSize * windowLength];
        for (int row = 0; row < batchSize; row++)
        {
            long global = (long)step * batchSize + row;
            int epoch = (int)(global / windows.Count);
            int within = (int)(global % windows.Count);
            if (epoch != orderEpoch)
            {
                order = Enumerable.Range(0, windows.Count).ToList();
                new SplitMix64(unchecked((ulong)(seed * 1_000_003 + epoch))).Shuffle(order);
                orderEpoch = epoch;
            }
            var (d, offset) = windows[order[within]];
            var source = domains[d].Tokens;
            for (int i = 0; i < windowLength; i++) ids[row * windowLength + i] = source[offset + i];
        }
        return ids;
    }
}
