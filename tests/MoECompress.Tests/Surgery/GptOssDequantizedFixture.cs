using System.Text.Json;
using System.Text.Json.Nodes;
using MoECompress.Formats.Families;
using MoECompress.Formats.Safetensors;
using static TorchSharp.torch;

namespace MoECompress.Tests.Surgery;

/// <summary>
/// Turns an MXFP4 GPT-OSS checkpoint into the dequantized bf16 layout transformers uses: <c>mlp.experts.gate_up_proj</c>
/// [E, H, 2I] (gate and up interleaved along the last dimension) and <c>mlp.experts.down_proj</c> [E, I, H], i.e. each
/// expert's [out, in] matrix transposed; biases and everything else unchanged, quantization_config removed.
/// </summary>
internal static class GptOssDequantizedFixture
{
    private const string Blocks = "_blocks", Scales = "_scales";

    public static void Write(string sourceDir, string destDir)
    {
        using var source = ModelCheckpoint.Open(sourceDir);
        var cfg = source.MoE;
        var specs = new List<TensorSpec>();
        var rebuilt = new Dictionary<string, (int Layer, bool GateUp)>();
        foreach (var name in source.Tensors.Names)
        {
            var info = source.Tensors.GetInfo(name);
            if (name.EndsWith(Scales, StringComparison.Ordinal)) continue;
            if (!name.EndsWith(Blocks, StringComparison.Ordinal)) { specs.Add(TensorSpec.From(info)); continue; }
            var role = source.Classify(name);
            var stem = name[..^Blocks.Length];
            bool gateUp = role.Projection == ExpertProjection.GateUp;
            long outDim = info.Shape[1], inDim = info.Shape[2] * 32;
            specs.Add(new TensorSpec(stem, SafetensorsDType.BF16, [info.Shape[0], inDim, outDim]));
            rebuilt[stem] = (role.Layer!.Value, gateUp);
        }
        using var writer = CheckpointWriter.Create(destDir, specs, new CheckpointWriterOptions { FlushToDisk = false });
        foreach (var spec in specs)
        {
            if (!rebuilt.TryGetValue(spec.Name, out var r))
            {
                writer.CopyTensorFrom(spec.Name, source.Tensors, spec.Name);
                continue;
            }
            using var scope = NewDisposeScope();
            var slabs = new List<Tensor>();
            for (int e = 0; e < cfg.NumExperts; e++)
            {
                if (r.GateUp)
                {
                    var gate = source.LoadExpert(r.Layer, e, ExpertProjection.Gate);
                    var up = source.LoadExpert(r.Layer, e, ExpertProjection.Up);
                    var m = stack([gate, up], 1).reshape(2 * gate.shape[0], gate.shape[1]); // rows gate0, up0, gate1, up1, ...
                    slabs.Add(m.t());
                }
                else slabs.Add(source.LoadExpert(r.Layer, e, ExpertProjection.Down).t());
            }
            writer.Write(spec.Name, stack(slabs).to(ScalarType.BFloat16).contiguous());
        }
        var config = (JsonObject)source.Config.DeepClone();
        config.Remove("quantization_config");
        writer.WriteTextFile("config.json", config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        writer.Commit();
    }
}
