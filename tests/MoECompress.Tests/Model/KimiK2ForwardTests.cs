using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using MoECompress.Compression.Model;
using MoECompress.Formats.Families;
using MoECompress.Formats.Safetensors;
using MoECompress.Formats.Synthetic;
using MoECompress.Tests.Calibration;
using static TorchSharp.torch;

namespace MoECompress.Tests.Model;

/// <summary>
/// Kimi K2 is the DeepSeek-V3 architecture under model_type kimi_k2, released with F8_E4M3 weights and 128×128
/// <c>weight_scale_inv</c> blocks. The engine must run it, dequantizing on load: its logits equal those of the same
/// model whose weights were decoded by the test's own E4M3 formula and block scaling and stored as float32.
/// </summary>
public sealed class KimiK2ForwardTests
{
    [Fact]
    public void Fp8CheckpointRunsAsItsHandDequantizedCopy()
    {
        var fp8Dir = TinyCalibrationModel.NewPath("kimi-fp8");
        SyntheticCheckpoint.Write("kimi-k2", fp8Dir, new SyntheticOptions { Layers = 2, Seed = 5 });
        var plainDir = TinyCalibrationModel.NewPath("kimi-plain");
        int decodedTensors = WriteHandDequantized(fp8Dir, plainDir);
        Assert.True(decodedTensors >= 10, $"only {decodedTensors} FP8 tensors");

        var tokens = TinyModel.Tokens(71, 9).Select(t => t * 10).ToArray();
        using var scope = NewDisposeScope();
        double[,] Logits(string dir)
        {
            using var checkpoint = ModelCheckpoint.Open(dir);
            var engine = new ModelEngine(checkpoint);
            Assert.Equal("deepseek_v3", engine.Config.ModelType);
            using var resident = engine.LoadResident();
            return Reference.Matrix(resident.Forward(tokens));
        }
        var fromFp8 = Logits(fp8Dir);
        var fromPlain = Logits(plainDir);
        Reference.AssertRelativelyClose(fromPlain, fromFp8, 1e-5);
    }

    /// <summary>
    /// Writes <paramref name="source"/> with every F8_E4M3 weight replaced by code·scale_inv[i/128, j/128] in float32
    /// (scales left out), quantization_config removed and model_type deepseek_v3. Returns how many tensors it decoded.
    /// </summary>
    private static int WriteHandDequantized(string source, string dest)
    {
        using var src = SafetensorsCheckpoint.Open(source);
        var specs = new List<TensorSpec>();
        var decoded = new HashSet<string>();
        foreach (var name in src.Names)
        {
            if (name.EndsWith("_scale_inv", StringComparison.Ordinal)) continue;
            var info = src.GetInfo(name);
            if (info.DType == SafetensorsDType.F8_E4M3)
            {
                decoded.Add(name);
                specs.Add(new TensorSpec(name, SafetensorsDType.F32, info.Shape));
            }
            else specs.Add(TensorSpec.From(info));
        }
        using (var writer = CheckpointWriter.Create(dest, specs, new CheckpointWriterOptions { FlushToDisk = false }))
        {
            foreach (var spec in specs)
            {
                if (!decoded.Contains(spec.Name))
                {
                    writer.CopyTensorFrom(spec.Name, src, spec.Name);
                    continue;
                }
                long rows = spec.Shape[0], cols = spec.Shape[1];
                var codes = src.GetBytes(spec.Name);
                var scales = MemoryMarshal.Cast<byte, float>(src.GetBytes(spec.Name + "_scale_inv")).ToArray();
                long blockCols = (cols + 127) / 128;
                var values = new float[rows * cols];
                for (long i = 0; i < rows; i++)
                    for (long j = 0; j < cols; j++)
                        values[i * cols + j] = (float)(E4M3(codes[(int)(i * cols + j)]) * scales[(i / 128) * blockCols + j / 128]);
                writer.Write(spec.Name, MemoryMarshal.AsBytes(values.AsSpan()));
            }
            var config = JsonNode.Parse(File.ReadAllText(Path.Combine(source, "config.json")))!.AsObject();
            Assert.Equal("kimi_k2", (string?)config["model_type"]);
            config.Remove("quantization_config");
            config["model_type"] = "deepseek_v3";
            writer.WriteTextFile("config.json", config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
            writer.Commit();
        }
        return decoded.Count;
    }

    /// <summary>OCP FP8 E4M3 (fn): sign, 4 exponent bits (bias 7), 3 mantissa bits; exponent 0 is subnormal.</summary>
    private static double E4M3(byte code)
    {
        int sign = code >> 7, exponent = (code >> 3) & 0xF, mantissa = code & 0x7;
        Assert.False(exponent == 0xF && mantissa == 0x7, "NaN code in the fixture");
        double magnitude = exponent == 0 ? mantissa / 8.0 * Math.Pow(2, -6) : (1 + mantissa / 8.0) * Math.Pow(2, exponent - 7);
        return sign == 1 ? -magnitude : magnitude;
    }
}
