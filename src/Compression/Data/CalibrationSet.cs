namespace MoECompress.Compression.Data;

/// <summary>Calibration sequences, all exactly <see cref="SeqLen"/> tokens long, with their provenance.</summary>
public sealed class CalibrationSet
{
    /// <summary>The sequences; each array has <see cref="SeqLen"/> ids.</summary>
    public IReadOnlyList<int[]> Sequences { get; }
    /// <summary>Tokens per sequence.</summary>
    public int SeqLen { get; }
    /// <summary>Number of sequences.</summary>
    public int Count => Sequences.Count;
    /// <summary>Where the sequences came from and how they were drawn.</summary>
    public CalibrationProvenance Provenance { get; }

    /// <summary>Creates a set; every sequence must have <paramref name="seqLen"/> ids.</summary>
    public CalibrationSet(IReadOnlyList<int[]> sequences, int seqLen, CalibrationProvenance provenance)
    {
        ArgumentNullException.ThrowIfNull(sequences);
        ArgumentNullException.ThrowIfNull(provenance);
        for (int i = 0; i < sequences.Count; i++)
            if (sequences[i].Length != seqLen)
                throw new ArgumentException($"sequence {i} has {sequences[i].Length} tokens, expected {seqLen}", nameof(sequences));
        Sequences = sequences;
        SeqLen = seqLen;
        Provenance = provenance;
    }

    /// <summary>All sequences row after row ([Count × SeqLen], row-major), e.g. to build a tensor.</summary>
    public long[] ToRowMajorInt64()
    {
        var flat = new long[(long)Count * SeqLen];
        for (int i = 0; i < Count; i++)
            for (int j = 0; j < SeqLen; j++)
                flat[(long)i * SeqLen + j] = Sequences[i][j];
        return flat;
    }

    /// <inheritdoc/>
    public override string ToString() => Provenance.Describe(Count, SeqLen);
}
