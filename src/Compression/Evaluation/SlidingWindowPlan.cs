using MoECompress.Formats.Errors;

namespace MoECompress.Compression.Evaluation;

/// <summary>
/// The windows of a strided perplexity evaluation, as Hugging Face's "Perplexity of fixed-length models" guide
/// computes it: a window of <c>context</c> tokens starts every <c>stride</c> tokens (the last window ends at the end of
/// the stream and may be shorter); in each window only the tokens that the previous window did not reach are targets,
/// so every token is scored at most once, with up to context − stride tokens of history. The first window scores all
/// of its tokens but the first (which has nothing to be predicted from); with stride &lt; context every token after the
/// first is scored exactly once. With stride = context the windows do not overlap and each window's first token is not
/// scored (as in the guide's loop, where the label shift drops it).
/// </summary>
public sealed class SlidingWindowPlan
{
    private SlidingWindowPlan(int totalTokens, int context, int stride, IReadOnlyList<SlidingWindow> windows)
    {
        TotalTokens = totalTokens;
        Context = context;
        Stride = stride;
        Windows = windows;
        TargetCount = windows.Sum(w => (long)w.TargetCount);
    }

    /// <summary>Length of the token stream.</summary>
    public int TotalTokens { get; }
    /// <summary>Tokens per window.</summary>
    public int Context { get; }
    /// <summary>Distance between the starts of consecutive windows.</summary>
    public int Stride { get; }
    /// <summary>The windows in stream order.</summary>
    public IReadOnlyList<SlidingWindow> Windows { get; }
    /// <summary>Total scored tokens over all windows.</summary>
    public long TargetCount { get; }

    /// <summary>Plans the windows over a stream of <paramref name="totalTokens"/> tokens.</summary>
    /// <exception cref="MoeCompressException">Usage: fewer than 2 tokens, context &lt; 2, or stride outside 1 … context.</exception>
    public static SlidingWindowPlan Create(int totalTokens, int context, int stride)
    {
        if (context < 2)
            throw new MoeCompressException(ErrorKind.Usage, $"--context {context}: a window needs at least 2 tokens");
        if (stride < 1 || stride > context)
            throw new MoeCompressException(ErrorKind.Usage,
                $"--stride {stride}: must be between 1 and the context ({context}); a larger stride would skip tokens");
        if (totalTokens < 2)
            throw new MoeCompressException(ErrorKind.Usage,
                $"the evaluation text has {totalTokens} token(s); perplexity needs at least 2");

        var windows = new List<SlidingWindow>();
        var previousEnd = 0;
        for (var begin = 0; begin < totalTokens; begin += stride)
        {
            var end = (int)Math.Min((long)begin + context, totalTokens);
            // Targets: tokens the previous window did not reach, and never the window's own first token.
            var firstTarget = Math.Max(previousEnd, begin + 1);
            if (firstTarget < end)
                windows.Add(new SlidingWindow(begin, end - begin, firstTarget));
            previousEnd = end;
            if (end == totalTokens) break;
        }
        return new SlidingWindowPlan(totalTokens, context, stride, windows);
    }
}
