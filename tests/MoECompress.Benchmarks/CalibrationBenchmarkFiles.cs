using System.Text.Json.Nodes;

namespace MoECompress.Benchmarks;

/// <summary>What the generated benchmark checkpoints lack: a tokenizer (they are fed input_ids) and token data.</summary>
internal static class CalibrationBenchmarkFiles
{
    public static string MixtralTokenizer([System.Runtime.CompilerServices.CallerFilePath] string source = "")
    {
        var dir = Path.GetDirectoryName(source);
        while (dir is not null && !File.Exists(Path.Combine(dir, "tests", "data", "tokenizers", "mixtral-8x7b", "tokenizer.json")))
            dir = Path.GetDirectoryName(dir);
        return Path.Combine(dir ?? throw new InvalidOperationException("tests/data not found"), "tests", "data", "tokenizers", "mixtral-8x7b", "tokenizer.json");
    }

    public static void WriteTokenData(string path, int tokens, int vocab)
    {
        var rng = new Random(11);
        using var w = new StreamWriter(path);
        for (int written = 0; written < tokens; written += 512)
        {
            var ids = new JsonArray();
            for (int i = 0; i < 512; i++) ids.Add(rng.Next(3, vocab));
            w.WriteLine(new JsonObject { ["input_ids"] = ids }.ToJsonString());
        }
    }
}
