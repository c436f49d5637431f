namespace MoECompress.Compression.Training;

/// <summary>
/// Linear warm-up from lr/warmup to lr over the first <c>warmup</c> steps, then cosine decay to <c>minLr</c> at the
/// last step. Step indices are 0-based.
/// </summary>
public sealed record CosineLearningRateSchedule(double PeakLearningRate, double MinLearningRate, int WarmupSteps, int TotalSteps)
{
    public double At(int step)
    {
        if (WarmupSteps > 0 && step < WarmupSteps) return PeakLearningRate * (step + 1) / WarmupSteps;
        int decaySteps = Math.Max(1, TotalSteps - WarmupSteps - 1);
        double progress = Math.Clamp((double)(step - WarmupSteps) / decaySteps, 0.0, 1.0);
        return MinLearningRate + 0.5 * (PeakLearningRate - MinLearningRate) * (1.0 + Math.Cos(Math.PI * progress));
    }
}
