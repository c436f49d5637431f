using System.Text.Json.Nodes;
using MoECompress.Formats.Quantized;
using MoECompress.Formats.Safetensors;
using TorchSharp;

namespace MoECompress.Formats.Families;

/// <summary>Which checks <see cref="ModelCheckpoint.Open(string, ModelCheckpointOptions?)"/> runs.</summary>
public sealed record ModelCheckpointOptions
{
    /// <summary>Check that router weights and biases hold no NaN/Inf (reads the router tensors: a few MB per layer).</summary>
    public bool ValidateRouterValues { get; init; } = true;
}

/// <summary>
/// An opened MoE checkpoint: config.json read and its family detected, the MoE facts completed from the tensor names
/// (fused or per-expert experts, MXFP4, module prefix), the safetensors memory-mapped, and config and tensors checked
/// against each other. Packed quantized checkpoints (gptq, compressed-tensors) are seen through a
/// <see cref="QuantizedTensorSource"/>: every packed module appears as a dense <c>.weight</c>. Dispose to unmap the files.
/// </summary>
public sealed class ModelCheckpoint : IDisposable
{
    public const string ConfigFileName = "config.json";

    /// <summary>The checkpoint directory (full path).</summary>
    public string Directory { get; }
    public string ConfigPath { get; }
    /// <summary>config.json as read (do not modify: it is the input's).</summary>
    public JsonObject Config { get; }
    public IMoEFamily Family { get; }
    public MoEConfig MoE { get; }
    public ITensorSource Tensors { get; }
    /// <summary>MTP layers whose tensors are stored (numbered after the decoder layers); empty when the release dropped them.</summary>
    public IReadOnlyList<int> MtpLayersPresent { get; }

    private readonly IDisposable? _owned;

    private ModelCheckpoint(string directory, string configPath, JsonObject config, IMoEFamily family, MoEConfig moe,
        ITensorSource tensors, IDisposable? owned)
    {
        Directory = directory;
        ConfigPath = configPath;
        Config = config;
        Family = family;
        MoE = moe;
        Tensors = tensors;
        _owned = owned;
        MtpLayersPresent = tensors.Names.Select(n => family.Classify(n, moe)).Where(r => r.InMtp && r.Layer is not null)
            .Select(r => r.Layer!.Value).Distinct().Order().ToList();
    }

    /// <summary>
    /// Opens <paramref name="dir"/>: reads config.json (missing or invalid: InvalidConfig naming the file), detects the
    /// family (unsupported: InvalidConfig listing the supported architectures), opens the safetensors, and validates
    /// config against tensors (InvalidConfig naming config.json, the key and the tensor; InvalidValues for NaN/Inf
    /// routers).
    /// </summary>
    public static ModelCheckpoint Open(string dir, ModelCheckpointOptions? options = null, CancellationToken cancellationToken = default)
    {
        options ??= new ModelCheckpointOptions();
        var full = Path.GetFullPath(dir);
        if (Gguf.GgufTensorSource.IsGgufPath(full)) return OpenGguf(full, options, cancellationToken);
        var configPath = Path.Combine(full, ConfigFileName);
        var config = ConfigReader.LoadFile(configPath);
        var family = FamilyRegistry.Detect(config, configPath);
        var moe = family.ReadConfig(config, configPath);
        var tensors = SafetensorsCheckpoint.Open(full);
        try
        {
            // Packed quantized checkpoints (gptq, compressed-tensors) are read through a dequantizing view.
            var view = QuantizedTensorSource.Wrap(tensors, config, configPath);
            return Validate(full, configPath, config, family, moe, view, tensors, options, cancellationToken);
        }
        catch
        {
            tensors.Dispose();
            throw;
        }
    }

    /// <summary>A .gguf file read through <see cref="Gguf.GgufTensorSource"/> (dequantized, Hugging Face names); the
    /// checkpoint's <see cref="Directory"/> is the file's folder and <see cref="ConfigPath"/> the file.</summary>
    private static ModelCheckpoint OpenGguf(string path, ModelCheckpointOptions options, CancellationToken cancellationToken)
    {
        var source = Gguf.GgufTensorSource.Open(path);
        try
        {
            var family = FamilyRegistry.Detect(source.Config, path);
            var moe = family.ReadConfig(source.Config, path);
            return Validate(Path.GetDirectoryName(path)!, path, source.Config, family, moe, source, source, options, cancellationToken);
        }
        catch
        {
            source.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Wraps tensors that are already open (an in-memory or custom source) with a config: same detection and validation
    /// as <see cref="Open(string, ModelCheckpointOptions?)"/>. The checkpoint does not dispose <paramref name="tensors"/>.
    /// </summary>
    public static ModelCheckpoint FromSource(JsonObject config, string configPath, ITensorSource tensors,
        ModelCheckpointOptions? options = null, CancellationToken cancellationToken = default)
    {
        var family = FamilyRegistry.Detect(config, configPath);
        var moe = family.ReadConfig(config, configPath);
        var dir = Path.GetDirectoryName(Path.GetFullPath(configPath)) ?? ".";
        var view = QuantizedTensorSource.Wrap(tensors, config, configPath);
        return Validate(dir, configPath, config, family, moe, view, null, options ?? new ModelCheckpointOptions(), cancellationToken);
    }

    private static ModelCheckpoint Validate(string dir, string configPath, JsonObject config, IMoEFamily family, MoEConfig moe,
        ITensorSource tensors, IDisposable? owned, ModelCheckpointOptions options, CancellationToken cancellationToken)
    {
        moe = family.ResolveLayout(moe, tensors.Names);
        CheckpointValidator.ValidateStructure(family, moe, tensors, configPath);
        cancellationToken.ThrowIfCancellationRequested();
        if (options.ValidateRouterValues) CheckpointValidator.ValidateRouterValues(family, moe, tensors, cancellationToken);
        return new ModelCheckpoint(dir, configPath, config, family, moe, tensors, owned);
    }

    /// <summary>The role of a tensor of this checkpoint.</summary>
    public TensorRoleInfo Classify(string name) => Family.Classify(name, MoE);

    /// <summary>One routed expert's projection as float32 [out, in] (or its stored 16-bit type with
    /// <paramref name="keep16Bit"/>, see <see cref="ExpertWeights"/>); the caller owns it.</summary>
    public torch.Tensor LoadExpert(int layer, int expert, ExpertProjection projection, bool keep16Bit = false) =>
        ExpertWeights.Load(Tensors, Family, MoE, layer, expert, projection, keep16Bit);

    public void Dispose() => _owned?.Dispose();

    public override string ToString() => $"{Directory} ({Family.Name}, {MoE.NumExperts} experts × {MoE.NumMoELayers} MoE layers)";
}
