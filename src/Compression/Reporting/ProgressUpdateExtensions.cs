namespace MoECompress.Compression.Reporting;

/// <summary>Reports a <see cref="ProgressUpdate"/> to a sink that may or may not understand structured progress.</summary>
public static class ProgressUpdateExtensions
{
    /// <summary>
    /// Sends <paramref name="update"/> to <paramref name="progress"/> as a record when it implements
    /// <c>IProgress&lt;ProgressUpdate&gt;</c>, else as its message; nothing when <paramref name="progress"/> is null.
    /// </summary>
    public static void ReportUpdate(this IProgress<string>? progress, ProgressUpdate update)
    {
        ArgumentNullException.ThrowIfNull(update);
        if (progress is IProgress<ProgressUpdate> structured) structured.Report(update);
        else progress?.Report(update.Message);
    }

    /// <summary>True when <paramref name="progress"/> takes structured updates (so fine-grained ones are worth sending).</summary>
    public static bool AcceptsUpdates(this IProgress<string>? progress) => progress is IProgress<ProgressUpdate>;
}
