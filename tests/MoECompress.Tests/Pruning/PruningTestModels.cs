using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using MoECompress.Compression.Model;
using MoECompress.Formats.Families;
using MoECompress.Formats.Safetensors;
using MoECompress.Formats.Synthetic;
using MoECompress.Tests.Calibration;
using static TorchSharp.torch;

namespace MoECompress.Tests.Pruning;

/// <summary>Checkpoints, token data and logits for the pruning tests (folders under the calibration tests' temporary root).</summary>
internal static class PruningTestModels
{
    /// <summary>DeepSeek-V3 layout (16 experts in 4 groups, top-4, 1 MTP layer) with one expert per group that no token
    /// ever selects: e_score_correction_bias −10 against sigmoid scores in (0, 1).</summary>
    public static readonly int[] DeepSeekColdExperts = [1, 6, 11, 12];

    private static readonly Lazy<string> DeepSeekColdDir = new(() => Write("deepseek-v3", "deepseek-cold-groups", (name, values) =>
    {
        if (name.EndsWith(".e_score_correction_bias", StringComparison.Ordinal))
            foreach (var e in DeepSeekColdExperts) values[e] = -10f;
    }));

    /// <summary>Folder of the DeepSeek-V3-like model with a never-selected expert in every group.</summary>
    public static string DeepSeekColdGroups => DeepSeekColdDir.Value;

    /// <summary>A .jsonl of pre-tokenized documents with ids in [3, 256).</summary>
    public static string WriteTokenData(string name, int documents, int length, int seed)
    {
        var path = TinyCalibrationModel.NewPath(name) + ".jsonl";
        var rng = new Random(seed);
        File.WriteAllLines(path, Enumerable.Range(0, documents).Select(_ =>
            new JsonObject { ["input_ids"] = new JsonArray(Enumerable.Range(0, length).Select(_ => (JsonNode?)rng.Next(3, 256)).ToArray()) }
                .ToJsonString()));
        return path;
    }

    /// <summary>Full logits of every sequence, flattened (streamed run of the checkpoint in <paramref name="dir"/>).</summary>
    public static float[][] Logits(string dir, IReadOnlyList<int[]> sequences)
    {
        using var checkpoint = ModelCheckpoint.Open(dir);
        var runner = new ModelEngine(checkpoint).CreateRunner();
        var logits = runner.ComputeLogits(sequences.Select(s => (IReadOnlyList<int>)s).ToList());
        try
        {
            return logits.Select(t => t.contiguous().data<float>().ToArray()).ToArray();
        }
        finally
        {
            foreach (var t in logits) t.Dispose();
        }
    }

    private static string Write(string preset, string folder, Action<string, float[]> edit) =>
        TinyCalibrationModel.Write(preset, TinyCalibrationModel.NewPath(folder), 13, edit);
}
