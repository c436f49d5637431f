using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Families;
using MoECompress.Formats.Safetensors;

namespace MoECompress.Formats.Quantized;

/// <summary>
/// Turns a packed quantized checkpoint (gptq or compressed-tensors pack-quantized) back into a plain one: every packed
/// Linear module becomes a dense <c>prefix.weight</c> Ŵ = s·(q − z) in the chosen dtype, every other tensor is copied
/// unchanged, config.json loses its quantization_config (and AutoGPTQ's quantize_config.json is left out), and the
/// other files are copied. Written through <see cref="CheckpointWriter"/> (temporary folder, then an atomic rename).
/// </summary>
public static class Dequantizer
{
    /// <summary>Writes the dequantized checkpoint.</summary>
    /// <exception cref="MoeCompressException">Usage: missing input, output equal to the input, a dtype other than
    /// BF16/F16/F32, or an input that is not packed; InvalidConfig / InvalidCheckpoint: malformed input; Io: the output
    /// exists (without <see cref="DequantizeOptions.Overwrite"/>) or cannot be written.</exception>
    public static DequantizeResult Run(DequantizeOptions options, IProgress<CheckpointCopyProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        var clock = Stopwatch.StartNew();
        string input = Path.TrimEndingDirectorySeparator(Path.GetFullPath(options.Input));
        string output = Path.TrimEndingDirectorySeparator(Path.GetFullPath(options.Output));
        if (!Directory.Exists(input))
            throw new MoeCompressException(ErrorKind.Usage, $"{input}: model folder not found");
        if (options.DType is not (SafetensorsDType.BF16 or SafetensorsDType.F16 or SafetensorsDType.F32))
            throw new MoeCompressException(ErrorKind.Usage, $"--dtype {options.DType.ToHeaderName()}: dequantized weights are written as BF16, F16 or F32");
        if (string.Equals(input, output, StringComparison.Ordinal) || input.StartsWith(output + Path.DirectorySeparatorChar, StringComparison.Ordinal))
            throw new MoeCompressException(ErrorKind.Usage, $"{output}: the output is (or contains) the input checkpoint");

        string configPath = Path.Combine(input, ModelCheckpoint.ConfigFileName);
        var config = ConfigReader.LoadFile(configPath);
        string? method = QuantizedTensorSource.QuantMethodOf(config);
        if (method is not (GptqQuantizationConfig.Method or CompressedTensorsQuantizationConfig.Method))
            throw new MoeCompressException(ErrorKind.Usage,
                $"{configPath}: not a packed quantized checkpoint (quantization_config.quant_method is '{method ?? "absent"}'); " +
                "dequantize reads gptq and compressed-tensors checkpoints");

        using var inner = SafetensorsCheckpoint.Open(input);
        var view = new QuantizedTensorSource(inner, config, configPath, new QuantizedTensorSourceOptions { CacheBytes = 0 });
        var plan = new List<TensorSpec>(view.Names.Count);
        foreach (var name in view.Names)
        {
            var m = view.ModuleOf(name);
            plan.Add(m is null ? TensorSpec.From(inner.GetInfo(name)) : new TensorSpec(name, options.DType, [m.OutFeatures, m.InFeatures]));
        }

        var manifestOptions = new JsonObject
        {
            ["command"] = "dequantize",
            ["input"] = input,
            ["dtype"] = options.DType.ToHeaderName(),
        };
        using var writer = CheckpointWriter.Create(output, plan, new CheckpointWriterOptions
        {
            Overwrite = options.Overwrite,
            FlushToDisk = options.FlushToDisk,
            ManifestOptions = manifestOptions,
        });
        long done = 0;
        for (int i = 0; i < plan.Count; i++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            string name = plan[i].Name;
            if (view.ModuleOf(name) is not null)
            {
                using var t = view.ToTensor(name, options.DType.ToScalarType());
                writer.Write(name, t);
            }
            else
            {
                writer.CopyTensorFrom(name, inner, name, cancellationToken);
            }
            done += plan[i].ByteLength;
            progress?.Report(new CheckpointCopyProgress(done, writer.TotalTensorBytes, i + 1, plan.Count, name));
        }

        var plainConfig = (JsonObject)config.DeepClone();
        plainConfig.Remove("quantization_config");
        writer.WriteTextFile(ModelCheckpoint.ConfigFileName, plainConfig.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
        var aux = writer.CopyAuxiliaryFiles(input, [ModelCheckpoint.ConfigFileName, "quantize_config.json"], cancellationToken);
        writer.SetManifestProperty("dequantized", new JsonObject
        {
            ["quant_method"] = method,
            ["modules"] = view.Modules.Count,
            ["dtype"] = options.DType.ToHeaderName(),
        });
        long inputBytes = inner.TotalTensorBytes;
        writer.Commit(cancellationToken);
        return new DequantizeResult(output, method, view.Modules.Count, plan.Count, inputBytes, writer.TotalTensorBytes,
            options.DType, aux, clock.Elapsed);
    }
}
