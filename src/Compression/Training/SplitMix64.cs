namespace MoECompress.Compression.Training;

/// <summary>
/// A small, fully specified pseudo-random generator (SplitMix64) used for data order, so that shuffles do not depend
/// on the .NET runtime's <see cref="Random"/> implementation.
/// </summary>
internal sealed class SplitMix64
{
    private ulong state;

    public SplitMix64(long seed) => state = unchecked((ulong)seed);

    public ulong Next()
    {
        unchecked
        {
            ulong z = state += 0x9E3779B97F4A7C15UL;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            return z ^ (z >> 31);
        }
    }

    /// <summary>Uniform integer in [0, n) (n ≥ 1).</summary>
    public int NextInt(int n) => (int)(Next() % (ulong)n);

    /// <summary>Fisher–Yates shuffle in place.</summary>
    public void Shuffle<T>(IList<T> items)
    {
        for (int i = items.Count - 1; i > 0; i--)
        {
            int j = NextInt(i + 1);
            (items[i], items[j]) = (items[j], items[i]);
        }
    }
}
