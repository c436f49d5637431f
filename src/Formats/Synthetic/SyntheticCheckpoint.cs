using System.Buffers;
using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using MoECompress.Formats.Safetensors;

namespace MoECompress.Formats.Synthetic;

/// <summary>What <see cref="SyntheticCheckpoint.Write"/> produced.</summary>
public sealed record SyntheticCheckpointInfo(
    string Directory, SyntheticPreset Preset, SyntheticSizes Sizes, JsonObject Config, int TensorCount, long TotalBytes,
    int ShardCount, long MaxShardBytes, TimeSpan Elapsed);

/// <summary>
/// Writes small (or, for IO benchmarks, large) random checkpoints whose config.json keys, tensor names, shapes, dtypes
/// and sharding follow a real MoE model, scaled down: every supported family and layout has a preset
/// (<see cref="Presets"/>). Values are seeded and reproducible; a checkpoint of a few GB writes in seconds.
/// </summary>
public static class SyntheticCheckpoint
{
    /// <summary>Names of the presets (<see cref="SyntheticPresetCatalog"/>).</summary>
    public static IReadOnlyList<string> Presets { get; } = SyntheticPresetCatalog.All.Select(p => p.Name).ToList();

    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    /// <summary>
    /// The scaled config.json and the tensor list of a preset (or the first preset of a family name), without writing
    /// anything. With <see cref="SyntheticOptions.TargetBytes"/>, hidden and intermediate sizes grow until the tensors
    /// reach that many bytes.
    /// </summary>
    public static (SyntheticPreset Preset, SyntheticSizes Sizes, JsonObject Config, IReadOnlyList<SyntheticTensor> Tensors) Plan(
        string presetName, SyntheticOptions? options = null)
    {
        options ??= new SyntheticOptions();
        var preset = SyntheticPresetCatalog.Get(presetName);
        var result = PlanAt(preset, options, 1);
        if (options.TargetBytes is long target && Bytes(result.Tensors) < target)
        {
            // Bytes grow about with the square of the multiplier: jump close, then step up.
            int m = Math.Max(2, (int)Math.Floor(Math.Sqrt((double)target / Bytes(result.Tensors))));
            result = PlanAt(preset, options, m);
            while (Bytes(result.Tensors) < target) result = PlanAt(preset, options, ++m);
        }
        return (preset, result.Sizes, result.Config, result.Tensors);
    }

    private static (SyntheticSizes Sizes, JsonObject Config, IReadOnlyList<SyntheticTensor> Tensors) PlanAt(
        SyntheticPreset preset, SyntheticOptions options, int multiplier)
    {
        var sizes = SyntheticConfigScaler.Resolve(preset, options, multiplier);
        var config = SyntheticConfigScaler.Build(preset, sizes);
        return (sizes, config, SyntheticTensorPlanner.Plan(preset, config));
    }

    private static long Bytes(IReadOnlyList<SyntheticTensor> tensors) => tensors.Sum(t => t.ByteCount);

    /// <summary>
    /// Writes the preset's checkpoint to <paramref name="destDir"/> (config.json, generation_config.json,
    /// tokenizer_config.json, shards with an index, and the writer's manifest), atomically: the folder appears only
    /// when complete. Throws MoeCompressException(Io) when the destination exists and Overwrite is not set.
    /// </summary>
    public static SyntheticCheckpointInfo Write(string presetName, string destDir, SyntheticOptions? options = null,
        IProgress<string>? progress = null, CancellationToken cancellationToken = default)
    {
        options ??= new SyntheticOptions();
        var clock = Stopwatch.StartNew();
        var (preset, sizes, config, tensors) = Plan(presetName, options);
        long total = Bytes(tensors);
        long largest = tensors.Max(t => t.ByteCount);
        long shardBytes = options.ShardBytes ?? Math.Max((total + 2) / 3, largest);

        var writerOptions = new CheckpointWriterOptions
        {
            MaxShardBytes = shardBytes,
            Overwrite = options.Overwrite,
            FlushToDisk = false,
            ManifestOptions = new JsonObject
            {
                ["synthetic_preset"] = preset.Name,
                ["reference_model"] = preset.ReferenceModel,
                ["seed"] = options.Seed,
            },
        };
        var specs = tensors.Select(t => new TensorSpec(t.Name, t.DType, t.Shape)).ToList();
        using var writer = CheckpointWriter.Create(destDir, specs, writerOptions);
        progress?.Report($"{preset.Name}: {tensors.Count} tensors, {total:N0} bytes in {writer.Shards.Count} shard(s)");
        long written = 0, reported = 0;
        // Two-stage pipeline: the next tensor's values are generated while the current one is written.
        Task<byte[]>? pending = null;
        for (int k = 0; k < tensors.Count; k++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var tensor = tensors[k];
            var buffer = pending is null ? Generate(tensor, options.Seed) : pending.GetAwaiter().GetResult();
            if (k + 1 < tensors.Count)
            {
                var next = tensors[k + 1];
                pending = Task.Run(() => Generate(next, options.Seed), cancellationToken);
            }
            else
            {
                pending = null;
            }
            int length = checked((int)tensor.ByteCount);
            try
            {
                writer.Write(tensor.Name, buffer.AsSpan(0, length));
            }
            catch
            {
                try { pending?.GetAwaiter().GetResult(); } catch (OperationCanceledException) { }
                throw;
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }
            written += length;
            if (progress is not null && written - reported >= 256L << 20)
            {
                reported = written;
                progress.Report($"{preset.Name}: {written:N0} / {total:N0} bytes");
            }
        }
        writer.WriteTextFile("config.json", config.ToJsonString(Indented) + "\n");
        writer.WriteTextFile("generation_config.json", GenerationConfig(config).ToJsonString(Indented) + "\n");
        writer.WriteTextFile("tokenizer_config.json", TokenizerConfig(config).ToJsonString(Indented) + "\n");
        writer.Commit(cancellationToken);
        progress?.Report($"{preset.Name}: written to {writer.Destination} in {clock.Elapsed.TotalSeconds:F1} s");
        return new SyntheticCheckpointInfo(writer.Destination, preset, sizes, config, tensors.Count, total,
            writer.Shards.Count, shardBytes, clock.Elapsed);
    }

    private static byte[] Generate(SyntheticTensor tensor, int seed)
    {
        int length = checked((int)tensor.ByteCount);
        var buffer = ArrayPool<byte>.Shared.Rent(Math.Max(length, 1));
        SyntheticValueGenerator.Fill(tensor, seed, buffer.AsSpan(0, length));
        return buffer;
    }

    /// <summary>generation_config.json with the (remapped) special token ids of the config.</summary>
    internal static JsonObject GenerationConfig(JsonObject config)
    {
        var section = config["text_config"] as JsonObject ?? config;
        var g = new JsonObject { ["_from_model_config"] = true };
        foreach (var key in new[] { "bos_token_id", "eos_token_id", "pad_token_id" })
        {
            var value = section[key] ?? config[key];
            if (value is not null) g[key] = value.DeepClone();
        }
        g["transformers_version"] = (config["transformers_version"] ?? section["transformers_version"])?.DeepClone() ?? "4.57.0";
        return g;
    }

    /// <summary>A tokenizer_config.json naming the special tokens; the fixture ships no vocabulary.</summary>
    internal static JsonObject TokenizerConfig(JsonObject config)
    {
        var section = config["text_config"] as JsonObject ?? config;
        return new JsonObject
        {
            ["add_bos_token"] = section["bos_token_id"] is JsonValue,
            ["add_eos_token"] = false,
            ["bos_token"] = "<s>",
            ["eos_token"] = "</s>",
            ["pad_token"] = "<pad>",
            ["unk_token"] = "<unk>",
            ["clean_up_tokenization_spaces"] = false,
            ["model_max_length"] = (section["max_position_embeddings"] ?? JsonValue.Create(4096))!.DeepClone(),
            ["tokenizer_class"] = "PreTrainedTokenizerFast",
        };
    }
}
