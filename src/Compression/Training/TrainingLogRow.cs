namespace MoECompress.Compression.Training;

/// <summary>
/// One row of training-loss.csv: the step (1-based, after the update), tokens seen so far, the learning rate used,
/// the mean cross-entropy / load-balancing / z-loss over the steps since the previous row, and wall time.
/// </summary>
public sealed record TrainingLogRow(int Step, long TokensSeen, double LearningRate, double CrossEntropy,
    double LoadBalancingLoss, double RouterZLoss, double ElapsedSeconds, double TokensPerSecond)
{
    public const string CsvHeader = "step,tokens,lr,loss,aux_loss,z_loss,elapsed_s,tokens_per_s";

    public string ToCsv() => string.Create(System.Globalization.CultureInfo.InvariantCulture,
        $"{Step},{TokensSeen},{LearningRate:G6},{CrossEntropy:F5},{LoadBalancingLoss:F5},{RouterZLoss:F5},{ElapsedSeconds:F1},{TokensPerSecond:F0}");
}
