using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Families;
using MoECompress.Formats.Safetensors;
using TorchSharp;

namespace MoECompress.Formats.Quantized;

/// <summary>
/// Turns a quantized checkpoint (gptq or compressed-tensors pack-quantized, or a block-FP8 release such as DeepSeek-V3
/// and Kimi K2) back into a plain one: every packed Linear module becomes a dense <c>prefix.weight</c> Ŵ = s·(q − z),
/// every F8 weight with a <c>weight_scale_inv</c> companion becomes w·scale_inv (the companion is left out), both in
/// the chosen dtype, and MXFP4 <c>*_blocks</c>/<c>*_scales</c> pairs (GPT-OSS) become the dense [E, in, out] tensor of
/// the dequantized releases; every other tensor is copied
/// unchanged, config.json loses its quantization_config (and AutoGPTQ's quantize_config.json is left out), and the
/// other files are copied. Written through <see cref="CheckpointWriter"/> (temporary folder, then an atomic rename).
/// </summary>
public static class Dequantizer
{
    /// <summary>quant_method of DeepSeek-V3 / Kimi K2 releases: F8_E4M3 weights with F32 <c>weight_scale_inv</c> blocks.</summary>
    public const string Fp8Method = "fp8";
    private const string Fp8ScaleSuffix = "_scale_inv";

    /// <summary>quant_method of the GPT-OSS releases: expert weights as U8 <c>*_blocks</c> [E, out, in/32, 16] and <c>*_scales</c> [E, out, in/32].</summary>
    public const string Mxfp4Method = "mxfp4";
    private const string Mxfp4BlocksSuffix = "_blocks";
    private const string Mxfp4ScalesSuffix = "_scales";

    /// <summary>
    /// All experts of an MXFP4 tensor in the layout of GPT-OSS's dequantized releases: [E, in, out] (transposed), each
    /// expert decoded to [out, in] by <see cref="ExpertWeights"/>.
    /// </summary>
    private static torch.Tensor DecodeMxfp4(ITensorSource source, string blocks, string scales, long experts)
    {
        using var scope = torch.NewDisposeScope();
        var slabs = new torch.Tensor[experts];
        for (int e = 0; e < experts; e++)
            slabs[e] = ExpertWeights.Load(source, new ExpertTensorRef(blocks, ExpertLayout.FusedMxfp4, e, ScalesName: scales)).t();
        return torch.stack(slabs).contiguous().MoveToOuterDisposeScope();
    }

    /// <summary>The FP8 decoder reads 128×128 blocks (every DeepSeek-V3 / Kimi K2 release); other sizes are refused by name.</summary>
    private static void CheckFp8BlockSize(JsonObject config, string configPath)
    {
        if (config["quantization_config"]?["weight_block_size"] is not JsonArray size) return;
        if (size.Count != 2 || size.Any(n => n is not JsonValue v || !v.TryGetValue<int>(out var b) || b != 128))
            throw new MoeCompressException(ErrorKind.InvalidConfig,
                $"{configPath}: quantization_config.weight_block_size {size.ToJsonString()} is not supported (only [128, 128])");
    }

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
        if (method is not (GptqQuantizationConfig.Method or CompressedTensorsQuantizationConfig.Method or Fp8Method or Mxfp4Method))
            throw new MoeCompressException(ErrorKind.Usage,
                $"{configPath}: not a quantized checkpoint this command reads (quantization_config.quant_method is '{method ?? "absent"}'); " +
                "dequantize reads gptq, compressed-tensors, block-FP8 (fp8) and MXFP4 (mxfp4) checkpoints");

        using var inner = SafetensorsCheckpoint.Open(input);
        // Every tensor the output holds, and for the decoded ones how to make the dense weight.
        var decoded = new Dictionary<string, Func<torch.ScalarType, torch.Tensor>>(StringComparer.Ordinal);
        var plan = new List<TensorSpec>(inner.Names.Count);
        if (method == Fp8Method)
        {
            CheckFp8BlockSize(config, configPath);
            var scales = inner.Names.Where(n => n.EndsWith(Fp8ScaleSuffix, StringComparison.Ordinal)).ToHashSet(StringComparer.Ordinal);
            foreach (var name in inner.Names)
            {
                if (scales.Contains(name)) continue;
                var info = inner.GetInfo(name);
                if (info.DType.IsFloat8() && info.Shape.Length == 2 && scales.Contains(name + Fp8ScaleSuffix))
                {
                    decoded[name] = dtype => ExpertWeights.Load(inner, new ExpertTensorRef(name, ExpertLayout.PerExpert)).to(dtype);
                    plan.Add(new TensorSpec(name, options.DType, info.Shape));
                }
                else
                    plan.Add(TensorSpec.From(info));
            }
        }
        else if (method == Mxfp4Method)
        {
            foreach (var name in inner.Names)
            {
                if (name.EndsWith(Mxfp4ScalesSuffix, StringComparison.Ordinal)
                    && inner.Contains(name[..^Mxfp4ScalesSuffix.Length] + Mxfp4BlocksSuffix)) continue;
                var info = inner.GetInfo(name);
                var stem = name.EndsWith(Mxfp4BlocksSuffix, StringComparison.Ordinal) ? name[..^Mxfp4BlocksSuffix.Length] : null;
                if (stem is not null && inner.Contains(stem + Mxfp4ScalesSuffix) && info.Shape is [var experts, var rows, var groups, 16])
                {
                    decoded[stem] = dtype => DecodeMxfp4(inner, name, stem + Mxfp4ScalesSuffix, experts).to(dtype);
                    plan.Add(new TensorSpec(stem, options.DType, [experts, groups * 32, rows]));
                }
                else
                    plan.Add(TensorSpec.From(info));
            }
        }
        else
        {
            var view = new QuantizedTensorSource(inner, config, configPath, new QuantizedTensorSourceOptions { CacheBytes = 0 });
            foreach (var name in view.Names)
            {
                var m = view.ModuleOf(name);
                if (m is null) plan.Add(TensorSpec.From(inner.GetInfo(name)));
                else
                {
                    decoded[name] = dtype => view.ToTensor(name, dtype);
                    plan.Add(new TensorSpec(name, options.DType, [m.OutFeatures, m.InFeatures]));
                }
            }
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
            if (decoded.TryGetValue(name, out var decode))
            {
                using var scope = torch.NewDisposeScope();
                writer.Write(name, decode(options.DType.ToScalarType()));
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
            ["modules"] = decoded.Count,
            ["dtype"] = options.DType.ToHeaderName(),
        });
        long inputBytes = inner.TotalTensorBytes;
        writer.Commit(cancellationToken);
        return new DequantizeResult(output, method, decoded.Count, plan.Count, inputBytes, writer.TotalTensorBytes,
            options.DType, aux, clock.Elapsed);
    }
}
