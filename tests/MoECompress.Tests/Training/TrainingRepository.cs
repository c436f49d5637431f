using System.Runtime.CompilerServices;

namespace MoECompress.Tests.Training;

/// <summary>Paths inside the repository for the training tests (found from this source file's location).</summary>
internal static class TrainingRepository
{
    public static string Root([CallerFilePath] string source = "") =>
        Path.GetFullPath(Path.Combine(Path.GetDirectoryName(source)!, "..", "..", ".."));

    public static string MistralTokenizerModel => Path.Combine(Root(), "tests", "data", "tokenizers", "mistral-v1", "tokenizer.model");
    public static string DemoModel => Path.Combine(Root(), "models", "moe-demo");
    public static string Calibration => Path.Combine(Root(), "calibration");
}
