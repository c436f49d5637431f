using MoECompress.Compression.Training;

namespace MoECompress.Tests.Training;

public class CosineLearningRateScheduleTests
{
    [Fact]
    public void WarmsUpLinearlyThenDecaysToTheMinimumAtTheLastStep()
    {
        var s = new CosineLearningRateSchedule(1.0, 0.1, WarmupSteps: 4, TotalSteps: 14);
        Assert.Equal(0.25, s.At(0), 12);
        Assert.Equal(1.0, s.At(3), 12);
        Assert.Equal(1.0, s.At(4), 12);
        Assert.Equal(0.1, s.At(13), 12);
        // Halfway through the decay the cosine is at zero: lr = min + (peak − min)/2.
        var even = new CosineLearningRateSchedule(1.0, 0.0, WarmupSteps: 0, TotalSteps: 11);
        Assert.Equal(0.5, even.At(5), 12);
        for (int i = 1; i < 11; i++) Assert.True(even.At(i) <= even.At(i - 1));
    }
}
