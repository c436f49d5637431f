using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text.Json;
using MoECompress.Formats.Safetensors;
using MoECompress.Formats.Synthetic;

namespace MoECompress.Tests.Calibration;

/// <summary>
/// Tiny random checkpoints for the calibration tests, laid out by the synthetic presets (config keys, tensor names and
/// shapes of the real models, scaled down) but written as float32 with a few deliberate edits: one expert's down_proj
/// scaled up (a would-be super expert) and, for DeepSeek-V3, one expert's e_score_correction_bias set so low that no
/// token ever selects it (a cold expert). Written once per test run into a temporary folder.
/// </summary>
internal static class TinyCalibrationModel
{
    /// <summary>Mixtral layout, 4 layers × 8 experts (top-2), H = 64, vocab 256; layer 0 expert 3's down_proj × 60.</summary>
    public const int MixtralBoostedLayer = 0, MixtralBoostedExpert = 3;
    /// <summary>DeepSeek-V3 layout, 4 layers (layer 0 dense) × 16 experts in 4 groups (top-4); expert 5 never selected,
    /// layer 3 expert 9's down_proj × 60 (in the last 25% of layers: never a super expert).</summary>
    public const int DeepSeekColdExpert = 5, DeepSeekBoostedLayer = 3, DeepSeekBoostedExpert = 9;
    public const float Boost = 60f;

    private static readonly Lazy<string> Root = new(() =>
    {
        var dir = Path.Combine(Path.GetTempPath(), $"moe-calib-tests-{Environment.ProcessId}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            try { Directory.Delete(dir, true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        };
        return dir;
    });

    private static readonly Lazy<string> MixtralDir = new(() => Write("mixtral", (name, values) =>
    {
        if (name == $"model.layers.{MixtralBoostedLayer}.block_sparse_moe.experts.{MixtralBoostedExpert}.w2.weight")
            for (var i = 0; i < values.Length; i++) values[i] *= Boost;
    }));

    private static readonly Lazy<string> DeepSeekDir = new(() => Write("deepseek-v3", (name, values) =>
    {
        if (name.EndsWith(".mlp.gate.e_score_correction_bias", StringComparison.Ordinal))
            values[DeepSeekColdExpert] = -10f;
        if (name == $"model.layers.{DeepSeekBoostedLayer}.mlp.experts.{DeepSeekBoostedExpert}.down_proj.weight")
            for (var i = 0; i < values.Length; i++) values[i] *= Boost;
    }));

    /// <summary>Folder of the tiny Mixtral-like model (with the Mixtral tokenizer files).</summary>
    public static string Mixtral => MixtralDir.Value;

    /// <summary>Folder of the tiny DeepSeek-V3-like model (with the Mixtral tokenizer files).</summary>
    public static string DeepSeekV3 => DeepSeekDir.Value;

    /// <summary>A fresh empty path under the test root (not created).</summary>
    public static string NewPath(string name) => Path.Combine(Root.Value, $"{name}-{Guid.NewGuid():N}");

    /// <summary>Seeded random token sequences within the model's vocabulary.</summary>
    public static int[][] RandomSequences(int count, int length, int vocab, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, count).Select(_ => Enumerable.Range(0, length).Select(_ => rng.Next(vocab)).ToArray()).ToArray();
    }

    private static string Write(string preset, Action<string, float[]> edit) => Write(preset, Path.Combine(Root.Value, preset), 7, edit);

    /// <summary>
    /// Writes the float32 checkpoint of a synthetic preset (values from <paramref name="seed"/>, each tensor passed through
    /// <paramref name="edit"/>) with the Mixtral tokenizer files into <paramref name="dir"/>.
    /// </summary>
    public static string Write(string preset, string dir, int seed, Action<string, float[]> edit)
    {
        var (_, _, config, tensors) = SyntheticCheckpoint.Plan(preset, new SyntheticOptions { Seed = seed });
        var plan = tensors.Select(t => new TensorSpec(t.Name, SafetensorsDType.F32, t.Shape)).ToList();
        using var writer = CheckpointWriter.Create(dir, plan, new CheckpointWriterOptions { FlushToDisk = false });
        foreach (var t in tensors)
        {
            var f32 = t with { DType = SafetensorsDType.F32 };
            var values = new float[f32.ElementCount];
            SyntheticValueGenerator.Fill(f32, seed, MemoryMarshal.AsBytes(values.AsSpan()));
            edit(t.Name, values);
            writer.Write(t.Name, MemoryMarshal.AsBytes(values.AsSpan()));
        }
        writer.WriteTextFile("config.json", config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        var tokenizer = Path.Combine(Infrastructure.RepoPaths.TestData, "tokenizers", "mixtral-8x7b");
        foreach (var file in new[] { "tokenizer.json", "tokenizer_config.json" })
            writer.WriteFile(file, File.ReadAllBytes(Path.Combine(tokenizer, file)));
        writer.Commit();
        return dir;
    }
}
