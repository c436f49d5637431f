using MoECompress.Compression.Evaluation;
using MoECompress.Formats.Errors;

namespace MoECompress.Tests.Evaluation;

public class SlidingWindowPlanTests
{
    /// <summary>
    /// The loop of Hugging Face's "Perplexity of fixed-length models" guide, ported literally: labels are the window's
    /// last trg_len tokens, and the model's internal shift drops the window's first position. Returns, per window,
    /// (begin, end, scored stream positions).
    /// </summary>
    internal static List<(int Begin, int End, List<int> Scored)> HuggingFaceWindows(int seqLen, int maxLength, int stride)
    {
        var result = new List<(int, int, List<int>)>();
        var prevEndLoc = 0;
        for (var beginLoc = 0; beginLoc < seqLen; beginLoc += stride)
        {
            var endLoc = Math.Min(beginLoc + maxLength, seqLen);
            var trgLen = endLoc - prevEndLoc;
            var labels = new List<int>();
            for (var p = beginLoc; p < endLoc; p++)
                if (p >= endLoc - trgLen) labels.Add(p);      // target_ids[:, :-trg_len] = -100
            var scored = labels.Where(p => p > beginLoc).ToList(); // labels shift: position 0 of the window is never predicted
            result.Add((beginLoc, endLoc, scored));
            prevEndLoc = endLoc;
            if (endLoc == seqLen) break;
        }
        return result;
    }

    [Fact]
    public void TenTokensContextFourStrideTwo_ScoresEachPositionAfterTheFirstOnce()
    {
        var plan = SlidingWindowPlan.Create(10, 4, 2);

        Assert.Equal(
            new[] { new SlidingWindow(0, 4, 1), new SlidingWindow(2, 4, 4), new SlidingWindow(4, 4, 6), new SlidingWindow(6, 4, 8) },
            plan.Windows);
        var scored = plan.Windows.SelectMany(w => Enumerable.Range(w.FirstTarget, w.TargetCount)).ToList();
        Assert.Equal(Enumerable.Range(1, 9), scored); // positions 1..9, each exactly once, in order; 0 never
        Assert.Equal(9, plan.TargetCount);
        // Windows after the first score only their last stride tokens and see context − stride tokens of history.
        Assert.All(plan.Windows.Skip(1), w => Assert.Equal(2, w.FirstTarget - w.Start));
        Assert.Equal(new[] { 0, 1, 1, 1 }, plan.Windows.Select(w => w.ScoringRow)); // row r predicts window token r + 1
    }

    [Fact]
    public void LastWindowIsShorterWhenTheStreamDoesNotFillIt()
    {
        var plan = SlidingWindowPlan.Create(11, 4, 2);

        Assert.Equal(new SlidingWindow(8, 3, 10), plan.Windows[^1]);
        Assert.Equal(Enumerable.Range(1, 10), plan.Windows.SelectMany(w => Enumerable.Range(w.FirstTarget, w.TargetCount)));
    }

    [Fact]
    public void StreamShorterThanTheContextIsOneWindow()
    {
        var plan = SlidingWindowPlan.Create(5, 512, 256);

        Assert.Equal(new[] { new SlidingWindow(0, 5, 1) }, plan.Windows);
        Assert.Equal(4, plan.TargetCount);
    }

    [Theory]
    [InlineData(10, 4, 2)]
    [InlineData(11, 4, 2)]
    [InlineData(23, 8, 3)]
    [InlineData(100, 16, 5)]
    [InlineData(17, 5, 4)]
    [InlineData(9, 3, 1)]
    [InlineData(20, 4, 4)]   // stride = context: each window's first token is not scored
    [InlineData(21, 6, 6)]
    [InlineData(7, 7, 3)]
    public void AgreesWithTheHuggingFaceLoop(int tokens, int context, int stride)
    {
        var plan = SlidingWindowPlan.Create(tokens, context, stride);
        var reference = HuggingFaceWindows(tokens, context, stride).Where(w => w.Scored.Count > 0).ToList();

        Assert.Equal(reference.Count, plan.Windows.Count);
        for (var i = 0; i < reference.Count; i++)
        {
            var w = plan.Windows[i];
            Assert.Equal(reference[i].Begin, w.Start);
            Assert.Equal(reference[i].End, w.End);
            Assert.Equal(reference[i].Scored, Enumerable.Range(w.FirstTarget, w.TargetCount));
            Assert.True(w.Length <= context);
        }
        var all = plan.Windows.SelectMany(w => Enumerable.Range(w.FirstTarget, w.TargetCount)).ToList();
        Assert.Equal(all.Count, all.Distinct().Count()); // never twice
        if (stride < context) Assert.Equal(Enumerable.Range(1, tokens - 1), all.Order());
    }

    [Theory]
    [InlineData(10, 1, 1)]
    [InlineData(10, 4, 0)]
    [InlineData(10, 4, 5)]
    [InlineData(1, 4, 2)]
    [InlineData(0, 4, 2)]
    public void RejectsImpossibleSettings(int tokens, int context, int stride)
    {
        var ex = Assert.Throws<MoeCompressException>(() => SlidingWindowPlan.Create(tokens, context, stride));
        Assert.Equal(ErrorKind.Usage, ex.Kind);
    }
}
