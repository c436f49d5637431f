using System.Text.Json;
using System.Text.Json.Nodes;
using MoECompress.Compression.Model;
using MoECompress.Compression.Quantization;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Families;
using MoECompress.Formats.Quantized;
using MoECompress.Formats.Safetensors;
using MoECompress.Formats.Synthetic;
using static TorchSharp.torch;

namespace MoECompress.Tests.Quantization;

/// <summary>
/// A tiny Mixtral-layout checkpoint (synthetic preset: 4 layers × 8 experts, H 64, I 32, bf16) with every routed expert
/// quantized (mixed widths, group sizes and symmetry; layer 1 by GPTQ with act-order) and written packed in the gptq and
/// compressed-tensors formats; then reopened through <see cref="ModelCheckpoint.Open"/>.
/// </summary>
public sealed class PackedCheckpointTests : IClassFixture<PackedCheckpointTests.Fixture>
{
    private readonly Fixture _f;
    public PackedCheckpointTests(Fixture fixture) => _f = fixture;

    /// <summary>The base model, and each format's packed copy with the expected Ŵ of every module.</summary>
    public sealed class Fixture : IDisposable
    {
        public string Root { get; } = Path.Combine(Path.GetTempPath(), $"moe-packed-tests-{Guid.NewGuid():N}");
        public string Base => Path.Combine(Root, "base");
        private readonly Dictionary<QuantizedFormat, (string Dir, Dictionary<string, float[]> Expected)> _packed = new();
        private readonly object _lock = new();

        public Fixture()
        {
            Directory.CreateDirectory(Root);
            SyntheticCheckpoint.Write("mixtral", Base, new SyntheticOptions { Seed = 11 });
        }

        public (string Dir, Dictionary<string, float[]> Expected) Packed(QuantizedFormat format)
        {
            lock (_lock)
            {
                if (!_packed.TryGetValue(format, out var p))
                    _packed[format] = p = WritePacked(Base, Path.Combine(Root, format.ToName()), format);
                return p;
            }
        }

        public void Dispose()
        {
            try { Directory.Delete(Root, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }

    /// <summary>Scheme of expert (layer, expert): a mix of widths, group sizes (with partial groups) and symmetry.</summary>
    private static QuantizationScheme SchemeOf(int layer, int expert) => (layer, expert) switch
    {
        (0, _) => new QuantizationScheme(3, GroupSize: 32),
        (_, 1) => new QuantizationScheme(8, GroupSize: -1, Symmetric: true),
        (_, 2) => new QuantizationScheme(2, GroupSize: 24), // 64 = 24 + 24 + 16, 32 = 24 + 8
        _ => new QuantizationScheme(4, GroupSize: 32, Symmetric: true),
    };

    /// <summary>
    /// Writes <paramref name="source"/> with every routed expert weight quantized and packed; returns the folder and the
    /// expected dense Ŵ per weight name (QuantizedMatrix.Dequantize() with scales rounded as the format stores them).
    /// </summary>
    private static (string, Dictionary<string, float[]>) WritePacked(string source, string dest, QuantizedFormat format)
    {
        using var cp = ModelCheckpoint.Open(source);
        var expected = new Dictionary<string, float[]>();
        var matrices = new Dictionary<string, QuantizedMatrix>();
        var schemes = new Dictionary<string, QuantizationScheme>();
        var unquantized = new List<string>();
        var plan = new List<TensorSpec>();
        bool actOrder = false;
        try
        {
            foreach (var name in cp.Tensors.Names)
            {
                var role = cp.Classify(name);
                var info = cp.Tensors.GetInfo(name);
                if (role.Role == TensorRole.RoutedExpert && !role.IsBias && name.EndsWith(".weight", StringComparison.Ordinal))
                {
                    string module = name[..^".weight".Length];
                    var scheme = SchemeOf(role.Layer!.Value, role.Expert!.Value);
                    using var w = cp.Tensors.ToTensor(name, ScalarType.Float32);
                    QuantizedMatrix q;
                    if (role.Layer == 1)
                    {
                        // GPTQ with act-order on a random correlated Hessian: g_idx is a real permutation.
                        using var x = QuantTestData.CorrelatedInputs(96, w.shape[1], role.Expert!.Value);
                        using var h = x.t().matmul(x);
                        q = GptqQuantizer.Quantize(w, h, 96, scheme, new GptqOptions { ActOrder = true });
                        actOrder = true;
                    }
                    else
                    {
                        q = RtnQuantizer.Quantize(w, scheme);
                    }
                    matrices[module] = q;
                    schemes[module] = scheme;
                    plan.AddRange(QuantizedModuleWriter.Specs(module, w.shape[0], w.shape[1], scheme, format, info.DType, actOrder: true));
                    var m = q.ToUnpacked();
                    var scaleType = format == QuantizedFormat.Gptq ? SafetensorsDType.F16 : CompressedTensorsLayout.ScaleDType(info.DType);
                    for (int i = 0; i < m.Scales.Length; i++)
                        m.Scales[i] = scaleType == SafetensorsDType.F16 ? (float)(Half)m.Scales[i]
                            : BitConverter.Int32BitsToSingle(SyntheticValueGenerator.ToBFloat16Bits(m.Scales[i]) << 16);
                    expected[name] = m.Dequantize();
                    continue;
                }
                if (info.Shape.Length == 2 && role.Role is TensorRole.Attention or TensorRole.RouterWeight or TensorRole.LmHead)
                    unquantized.Add(name[..^".weight".Length]);
                plan.Add(TensorSpec.From(info));
            }

            var config = (JsonObject)cp.Config.DeepClone();
            config["quantization_config"] = QuantizationConfigBuilder.Build(format, schemes, unquantized, actOrder);
            using var writer = CheckpointWriter.Create(dest, plan, new CheckpointWriterOptions { FlushToDisk = false });
            foreach (var name in cp.Tensors.Names)
                if (!expected.ContainsKey(name)) writer.CopyTensorFrom(name, cp.Tensors);
            foreach (var (module, q) in matrices)
                QuantizedModuleWriter.Write(writer, module, q, format, SafetensorsDType.BF16, actOrder: true);
            writer.WriteTextFile("config.json", config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
            writer.CopyAuxiliaryFiles(source, ["config.json"]);
            writer.Commit();
        }
        finally
        {
            foreach (var q in matrices.Values) q.Dispose();
        }
        return (dest, expected);
    }

    [Theory]
    [InlineData(QuantizedFormat.Gptq)]
    [InlineData(QuantizedFormat.CompressedTensors)]
    public void Packed_checkpoint_reopens_with_dense_expert_weights(QuantizedFormat format)
    {
        var (dir, expected) = _f.Packed(format);
        using var cp = ModelCheckpoint.Open(dir);
        var view = Assert.IsType<QuantizedTensorSource>(cp.Tensors);
        Assert.Equal(format, view.Format);
        Assert.Equal(4 * 8 * 3, view.Modules.Count);
        Assert.Equal(8, cp.MoE.NumExperts);

        // Every expert weight reads back as Ŵ, through ExpertWeights (the engine's path) and ToTensor.
        for (int layer = 0; layer < 4; layer++)
            for (int expert = 0; expert < 8; expert++)
                foreach (var proj in new[] { ExpertProjection.Gate, ExpertProjection.Up, ExpertProjection.Down })
                {
                    var name = cp.Family.ExpertTensor(layer, expert, proj, cp.MoE).TensorName;
                    using var w = cp.LoadExpert(layer, expert, proj);
                    Assert.Equal(expected[name], w.data<float>().ToArray());
                }

        // The packed parts are hidden; the names are those of a plain checkpoint.
        using var base_ = ModelCheckpoint.Open(_f.Base);
        Assert.Equal(base_.Tensors.Names.Order(StringComparer.Ordinal), cp.Tensors.Names.Order(StringComparer.Ordinal));
        string packedPart = format == QuantizedFormat.Gptq ? ".qweight" : ".weight_packed";
        Assert.DoesNotContain(cp.Tensors.Names, n => n.EndsWith(packedPart, StringComparison.Ordinal));
        var part = view.Inner.Names.First(n => n.EndsWith(packedPart, StringComparison.Ordinal));
        Assert.False(cp.Tensors.Contains(part));
        Assert.Throws<CheckpointFormatException>(() => cp.Tensors.GetInfo(part));
        Assert.True(view.StoredTensorBytes < base_.Tensors.Names.Sum(n => base_.Tensors.GetInfo(n).ByteLength));
    }

    [Theory]
    [InlineData(QuantizedFormat.Gptq)]
    [InlineData(QuantizedFormat.CompressedTensors)]
    public void Routers_and_other_tensors_are_untouched(QuantizedFormat format)
    {
        var (dir, expected) = _f.Packed(format);
        using var cp = ModelCheckpoint.Open(dir);
        using var base_ = ModelCheckpoint.Open(_f.Base);
        int routers = 0;
        foreach (var name in base_.Tensors.Names.Where(n => !expected.ContainsKey(n)))
        {
            Assert.Equal(base_.Tensors.GetInfo(name).DType, cp.Tensors.GetInfo(name).DType);
            Assert.True(base_.Tensors.GetBytes(name).SequenceEqual(cp.Tensors.GetBytes(name)), name);
            if (base_.Classify(name).Role == TensorRole.RouterWeight) routers++;
        }
        Assert.Equal(4, routers);
    }

    [Theory]
    [InlineData(QuantizedFormat.Gptq)]
    [InlineData(QuantizedFormat.CompressedTensors)]
    public void Engine_reads_the_packed_checkpoint_like_its_dequantized_copy(QuantizedFormat format)
    {
        var (dir, _) = _f.Packed(format);
        var f32 = Path.Combine(_f.Root, $"{format.ToName()}-dequantized-f32");
        var result = Dequantizer.Run(new DequantizeOptions { Input = dir, Output = f32, DType = SafetensorsDType.F32, FlushToDisk = false });
        Assert.Equal(96, result.ModulesDequantized);

        int[] tokens = [1, 5, 9, 200, 17, 3, 77, 120];
        using var packed = ModelCheckpoint.Open(dir);
        using var plain = ModelCheckpoint.Open(f32);
        Assert.IsNotType<QuantizedTensorSource>(plain.Tensors);
        using var scope = NewDisposeScope();
        using var a = new ModelEngine(packed).LoadResident();
        using var b = new ModelEngine(plain).LoadResident();
        var la = a.Forward(tokens);
        var lb = b.Forward(tokens);
        Assert.True(la.isfinite().all().item<bool>());
        Assert.Equal(0f, (la - lb).abs().max().item<float>());
    }

    [Fact]
    public void Presented_weights_survive_cache_eviction_and_may_be_bf16()
    {
        var (dir, expected) = _f.Packed(QuantizedFormat.CompressedTensors);
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "config.json")))!.AsObject();
        using var inner = SafetensorsCheckpoint.Open(dir);
        var view = new QuantizedTensorSource(inner, config, Path.Combine(dir, "config.json"), new QuantizedTensorSourceOptions { CacheBytes = 0 });
        var names = expected.Keys.Take(3).ToArray();
        var first = view.GetBytes(names[0]);
        foreach (var n in names.Skip(1)) _ = view.GetBytes(n).Length; // evicts the first (cache of one)
        Assert.Equal(expected[names[0]], System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(first).ToArray());
        Assert.Equal(expected[names[0]], System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(view.GetBytes(names[0])).ToArray());

        var bf16 = new QuantizedTensorSource(inner, config, Path.Combine(dir, "config.json"), new QuantizedTensorSourceOptions { DType = SafetensorsDType.BF16 });
        Assert.Equal(SafetensorsDType.BF16, bf16.GetInfo(names[1]).DType);
        using var t = bf16.ToTensor(names[1], ScalarType.Float32);
        Assert.Equal(expected[names[1]].Select(v => BitConverter.Int32BitsToSingle(SyntheticValueGenerator.ToBFloat16Bits(v) << 16)),
            t.data<float>().ToArray());
    }

    [Fact]
    public void Dequantize_writes_a_plain_bf16_checkpoint()
    {
        var (dir, expected) = _f.Packed(QuantizedFormat.Gptq);
        var output = Path.Combine(_f.Root, "gptq-dequantized-bf16");
        var lines = new List<CheckpointCopyProgress>();
        var result = Dequantizer.Run(new DequantizeOptions { Input = dir, Output = output, FlushToDisk = false },
            new SyncProgress<CheckpointCopyProgress>(lines.Add));
        Assert.Equal("gptq", result.QuantMethod);
        Assert.Equal(SafetensorsDType.BF16, result.DType);
        Assert.Equal(result.TensorCount, lines.Count);
        Assert.Contains("gptq", result.ToMarkdown());
        Assert.Equal(96, (int)result.ToJson()["modules_dequantized"]!);

        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(output, "config.json")))!.AsObject();
        Assert.False(config.ContainsKey("quantization_config"));
        using var cp = ModelCheckpoint.Open(output);
        Assert.IsNotType<QuantizedTensorSource>(cp.Tensors);
        foreach (var (name, values) in expected)
        {
            Assert.Equal(SafetensorsDType.BF16, cp.Tensors.GetInfo(name).DType);
            using var w = cp.Tensors.ToTensor(name, ScalarType.Float32);
            var bf16 = values.Select(v => BitConverter.Int32BitsToSingle(SyntheticValueGenerator.ToBFloat16Bits(v) << 16));
            Assert.Equal(bf16, w.data<float>().ToArray());
        }
        // Running it on a plain checkpoint is a usage error.
        var e = Assert.Throws<MoeCompressException>(() => Dequantizer.Run(new DequantizeOptions { Input = output, Output = output + "-again" }));
        Assert.Equal(ErrorKind.Usage, e.Kind);
    }

    [Fact]
    public void Unsupported_quantization_methods_are_refused_by_name()
    {
        using var base_ = ModelCheckpoint.Open(_f.Base);
        foreach (var method in new[] { "awq", "bitsandbytes", "fp8" })
        {
            var config = (JsonObject)base_.Config.DeepClone();
            config["quantization_config"] = new JsonObject { ["quant_method"] = method };
            var e = Assert.Throws<MoeCompressException>(() => ModelCheckpoint.FromSource(config, Path.Combine(_f.Base, "config.json"), base_.Tensors));
            Assert.Equal(ErrorKind.InvalidConfig, e.Kind);
            Assert.Contains(method, e.Message);
            Assert.Contains("config.json", e.Message);
        }
        // DeepSeek-style block FP8 passes through to the family code.
        var fp8 = (JsonObject)base_.Config.DeepClone();
        fp8["quantization_config"] = new JsonObject { ["quant_method"] = "fp8", ["weight_block_size"] = new JsonArray(128, 128) };
        using var ok = ModelCheckpoint.FromSource(fp8, Path.Combine(_f.Base, "config.json"), base_.Tensors);
        Assert.Same(base_.Tensors, ok.Tensors);
    }

    [Fact]
    public void A_gptq_config_without_packed_tensors_is_an_error()
    {
        using var base_ = ModelCheckpoint.Open(_f.Base);
        var config = (JsonObject)base_.Config.DeepClone();
        config["quantization_config"] = new JsonObject { ["quant_method"] = "gptq", ["bits"] = 4, ["group_size"] = 128 };
        var e = Assert.Throws<CheckpointFormatException>(() => ModelCheckpoint.FromSource(config, Path.Combine(_f.Base, "config.json"), base_.Tensors));
        Assert.Contains("qweight", e.Message);
    }

    private sealed class SyncProgress<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }
}
