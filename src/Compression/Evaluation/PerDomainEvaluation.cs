namespace MoECompress.Compression.Evaluation;

/// <summary>
/// Evaluates a model (optionally against a base) on each held-out domain file separately — the per-domain tables of
/// the demo and of the quality study.
/// </summary>
public static class PerDomainEvaluation
{
    /// <summary>The held-out domain files (*.txt) of <paramref name="folder"/>, in name order.</summary>
    public static IReadOnlyList<string> DomainFiles(string folder) =>
        Directory.GetFiles(folder, "*.txt").Order(StringComparer.Ordinal).ToList();

    /// <summary>One <see cref="Evaluator"/> run per file: the first <paramref name="maxTokens"/> tokens of each.</summary>
    public static List<(string Domain, EvaluationReport Report)> Run(string model, string? baseModel, IReadOnlyList<string> files,
        int maxTokens, int? context = null, IProgress<string>? progress = null, CancellationToken cancellationToken = default)
    {
        var result = new List<(string, EvaluationReport)>();
        foreach (var file in files)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var report = Evaluator.Run(new EvaluateOptions
            {
                Model = model, Base = baseModel, Data = file, MaxTokens = maxTokens,
                Context = context, Stride = context / 2,
            }, progress, cancellationToken);
            result.Add((Path.GetFileNameWithoutExtension(file), report));
        }
        return result;
    }

    /// <summary>Bytes of the safetensors files of a checkpoint folder.</summary>
    public static long TensorBytes(string checkpointDir) =>
        Directory.GetFiles(checkpointDir, "*.safetensors").Sum(f => new FileInfo(f).Length);
}
