using MoECompress.Compression.Tokenization;
using MoECompress.Formats.Errors;

namespace MoECompress.Compression.Data;

/// <summary>
/// Loads calibration text and cuts it into fixed-length token sequences, as GPTQ and llm-compressor practice does:
/// documents are tokenized, joined into one stream with an EOS separator between them, and windows are cut from the
/// stream at seeded random offsets (or one after another when all windows are wanted).
/// </summary>
/// <remarks>
/// <para>Inputs: a .txt file (one document by default, see <see cref="TextDocumentSplit"/>), a .jsonl file with a
/// "text" or an "input_ids" field per line (pre-tokenized ids are used as they are), or a folder of such files
/// (not recursing, ordered by file name).</para>
/// <para>Sequences: with <see cref="CalibrationDataOptions.AddBos"/> and a tokenizer that has a BOS token, each
/// sequence is BOS followed by SeqLen−1 consecutive stream tokens; otherwise SeqLen consecutive stream tokens.
/// With a sample count, offsets are drawn so that windows do not overlap when the stream holds
/// samples × window tokens (n sorted uniform draws over the slack, each shifted by its rank × window), and as
/// independent uniform offsets otherwise. Deterministic for a given input, tokenizer and options.</para>
/// </remarks>
public static class CalibrationData
{
    /// <summary>Loads and samples calibration sequences from <paramref name="fileOrFolder"/>.</summary>
    /// <exception cref="MoeCompressException">Missing or empty input, malformed .jsonl (file and line named), bad options,
    /// or fewer tokens than one sequence (ErrorKind.Usage).</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public static CalibrationSet Load(string fileOrFolder, ITextTokenizer tokenizer, CalibrationDataOptions? options = null,
        IProgress<string>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(fileOrFolder);
        ArgumentNullException.ThrowIfNull(tokenizer);
        options ??= new CalibrationDataOptions();
        bool bos = options.AddBos && tokenizer.BosId is not null;
        int window = Validate(options, bos);

        var stream = TokenStreamBuilder.Build(fileOrFolder, tokenizer, options.TextSplit, progress, cancellationToken);
        long length = stream.Tokens.LongLength;
        if (length < window)
            throw new MoeCompressException(ErrorKind.Usage,
                $"{Path.GetFullPath(fileOrFolder)}: only {length:N0} tokens after tokenization, fewer than one sequence of {options.SeqLen} " +
                $"({window} stream tokens{(bos ? " after BOS" : "")}); give more text or a smaller sequence length");

        var (offsets, sampling) = DrawOffsets(length, window, options.Samples ?? 0, options.Seed);
        var sequences = new int[offsets.Length][];
        for (int i = 0; i < offsets.Length; i++)
        {
            var seq = new int[options.SeqLen];
            int at = 0;
            if (bos) seq[at++] = tokenizer.BosId!.Value;
            Array.Copy(stream.Tokens, offsets[i], seq, at, window);
            sequences[i] = seq;
        }

        var provenance = new CalibrationProvenance
        {
            Files = stream.Files,
            Documents = stream.Documents,
            PretokenizedDocuments = stream.PretokenizedDocuments,
            TotalTokens = length,
            SeparatorId = stream.SeparatorId,
            BosPrepended = bos,
            Sampling = sampling,
            Seed = options.Seed,
            Offsets = offsets,
            TokenizerName = tokenizer.Name,
            TextSplit = options.TextSplit,
        };
        var set = new CalibrationSet(sequences, options.SeqLen, provenance);
        progress?.Report(set.ToString());
        return set;
    }

    private static int Validate(CalibrationDataOptions options, bool bos)
    {
        int min = bos ? 2 : 1;
        if (options.SeqLen < min)
            throw new MoeCompressException(ErrorKind.Usage, $"sequence length {options.SeqLen} is too small (at least {min}{(bos ? ", BOS included" : "")})");
        if (options.Samples is < 0)
            throw new MoeCompressException(ErrorKind.Usage, $"number of calibration samples {options.Samples} is negative (0 means all windows)");
        return bos ? options.SeqLen - 1 : options.SeqLen;
    }

    /// <summary>Offsets of <paramref name="samples"/> windows of <paramref name="window"/> tokens in a stream of
    /// <paramref name="length"/> tokens (0 = every consecutive window).</summary>
    internal static (long[] Offsets, CalibrationSampling Sampling) DrawOffsets(long length, int window, int samples, int seed)
    {
        if (samples == 0)
        {
            var all = new long[length / window];
            for (int i = 0; i < all.Length; i++) all[i] = (long)i * window;
            return (all, CalibrationSampling.Sequential);
        }

        var rng = new SplitMix64(unchecked((ulong)(uint)seed));
        var offsets = new long[samples];
        if ((long)samples * window <= length)
        {
            // Uniform placement of n non-overlapping windows: n sorted draws from [0, slack], the i-th shifted by i windows.
            long slack = length - (long)samples * window;
            for (int i = 0; i < samples; i++) offsets[i] = rng.NextInt64(slack + 1);
            Array.Sort(offsets);
            for (int i = 0; i < samples; i++) offsets[i] += (long)i * window;
            return (offsets, CalibrationSampling.RandomNonOverlapping);
        }
        for (int i = 0; i < samples; i++) offsets[i] = rng.NextInt64(length - window + 1);
        return (offsets, CalibrationSampling.RandomOverlapping);
    }
}
