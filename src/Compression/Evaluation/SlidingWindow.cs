namespace MoECompress.Compression.Evaluation;

/// <summary>
/// One window of a sliding-window perplexity run: stream tokens <see cref="Start"/> … <see cref="End"/> − 1 are fed to
/// the model, and the tokens at positions <see cref="FirstTarget"/> … End − 1 are scored, each predicted from the
/// tokens before it inside the window.
/// </summary>
/// <param name="Start">Stream position of the window's first token.</param>
/// <param name="Length">Tokens in the window (the context, or fewer for the last window).</param>
/// <param name="FirstTarget">Stream position of the first scored token (≥ Start + 1).</param>
public sealed record SlidingWindow(int Start, int Length, int FirstTarget)
{
    /// <summary>Stream position one past the window's last token.</summary>
    public int End => Start + Length;

    /// <summary>Number of scored tokens (End − FirstTarget).</summary>
    public int TargetCount => End - FirstTarget;

    /// <summary>
    /// Row of the window's output that predicts the first scored token (FirstTarget − Start − 1): rows
    /// ScoringRow … ScoringRow + TargetCount − 1 are the ones whose logits are scored.
    /// </summary>
    public int ScoringRow => FirstTarget - Start - 1;
}
