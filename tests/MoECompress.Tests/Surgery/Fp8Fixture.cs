using System.Text.Json;
using MoECompress.Formats.Families;
using MoECompress.Formats.Safetensors;

namespace MoECompress.Tests.Surgery;

/// <summary>
/// Rewrites a checkpoint the way DeepSeek-V3/R1 releases store their experts: every per-expert routed weight as
/// F8_E4M3 plus a float32 <c>weight_scale_inv</c> of 128×128 blocks; everything else unchanged.
/// </summary>
internal static class Fp8Fixture
{
    public static void Write(string sourceDir, string destDir)
    {
        using var source = ModelCheckpoint.Open(sourceDir);
        var specs = new List<TensorSpec>();
        var fp8 = new HashSet<string>();
        foreach (var name in source.Tensors.Names)
        {
            var info = source.Tensors.GetInfo(name);
            var role = source.Classify(name);
            if (role.Role == TensorRole.RoutedExpert && !role.Fused && !role.IsBias && info.Shape.Length == 2)
            {
                fp8.Add(name);
                specs.Add(new TensorSpec(name, SafetensorsDType.F8_E4M3, info.Shape));
                specs.Add(new TensorSpec(name + "_scale_inv", SafetensorsDType.F32, [(info.Shape[0] + 127) / 128, (info.Shape[1] + 127) / 128]));
            }
            else specs.Add(TensorSpec.From(info));
        }
        var rng = new Random(42);
        using var writer = CheckpointWriter.Create(destDir, specs, new CheckpointWriterOptions { FlushToDisk = false, MaxShardBytes = 400_000 });
        foreach (var spec in specs)
        {
            if (fp8.Contains(spec.Name))
            {
                var bytes = new byte[spec.ByteLength];
                for (int i = 0; i < bytes.Length; i++)
                {
                    byte b;
                    do b = (byte)rng.Next(256); while ((b & 0x7F) == 0x7F); // no NaN codes
                    bytes[i] = b;
                }
                writer.Write(spec.Name, bytes);
            }
            else if (spec.Name.EndsWith("_scale_inv", StringComparison.Ordinal))
            {
                var values = new float[spec.ByteLength / 4];
                for (int i = 0; i < values.Length; i++) values[i] = 0.001f + (float)rng.NextDouble() * 0.01f;
                writer.Write(spec.Name, System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()));
            }
            else writer.CopyTensorFrom(spec.Name, source.Tensors, spec.Name);
        }
        writer.WriteTextFile("config.json", source.Config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        writer.Commit();
    }
}
