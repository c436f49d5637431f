using System.Buffers.Binary;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Gguf;
using MoECompress.Tests.Calibration;

namespace MoECompress.Tests.Gguf;

/// <summary>The GGUF container: typed metadata and tensor infos round trip exactly, data is aligned and contiguous,
/// the predicted size is the written size, and malformed files fail naming the file and what is wrong.</summary>
public sealed class GgufFileTests
{
    private static readonly List<KeyValuePair<string, GgufValue>> Metadata =
    [
        new("general.architecture", GgufValue.Str("llama")),
        new("general.alignment", GgufValue.U32(64)),
        new("llama.block_count", GgufValue.U32(2)),
        new("llama.rope.freq_base", GgufValue.F32(10000.5f)),
        new("llama.expert_weights_norm", GgufValue.Bool(true)),
        new("test.i32", GgufValue.I32(-7)),
        new("test.u64", GgufValue.U64(1UL << 40)),
        new("test.u8", new GgufValue(GgufValueType.UInt8, (byte)200)),
        new("test.i16", new GgufValue(GgufValueType.Int16, (short)-300)),
        new("test.f64", new GgufValue(GgufValueType.Float64, 0.1)),
        new("tokenizer.ggml.tokens", GgufValue.Strings(["<unk>", "▁héllo", ""])),
        new("tokenizer.ggml.scores", GgufValue.F32s([0f, -1.5f, -1000f])),
        new("tokenizer.ggml.token_type", GgufValue.I32s([2, 1, 5])),
    ];

    private static readonly List<(string, long[], GgmlType)> Tensors =
    [
        ("token_embd.weight", [64, 3], GgmlType.Q8_0),
        ("blk.0.attn_norm.weight", [7], GgmlType.F32),
        ("blk.0.ffn_gate_exps.weight", [256, 2, 3], GgmlType.Q4_K),
        ("blk.0.attn_q.weight", [32, 5], GgmlType.BF16),
    ];

    private static string WriteSample(out Dictionary<string, byte[]> data)
    {
        var path = TinyCalibrationModel.NewPath("sample") + ".gguf";
        var rng = new Random(1);
        data = [];
        using var writer = GgufWriter.Create(path, Metadata, Tensors);
        foreach (var t in writer.Tensors)
        {
            var bytes = new byte[t.ByteLength];
            rng.NextBytes(bytes);
            data[t.Name] = bytes;
            writer.WriteTensor(t.Name, bytes);
        }
        writer.Commit();
        return path;
    }

    [Fact]
    public void HeaderMetadataAndDataRoundTrip()
    {
        var path = WriteSample(out var data);
        Assert.Equal(new FileInfo(path).Length, GgufWriter.PredictFileBytes(Metadata, Tensors));
        using var file = GgufFile.Open(path);
        Assert.Equal(3u, file.Version);
        Assert.Equal(64, file.Alignment);
        Assert.Equal(0, file.DataOffset % 64);
        Assert.Equal(Metadata.Select(kv => kv.Key), file.Metadata.Select(kv => kv.Key));
        foreach (var (key, value) in Metadata) Assert.True(value.SameAs(file.Get(key)!), $"{key}: {file.Get(key)} ≠ {value}");
        long expectedOffset = 0;
        foreach (var (name, dims, type) in Tensors)
        {
            var t = file.GetTensor(name);
            Assert.Equal(dims, t.Dimensions);
            Assert.Equal(type, t.Type);
            Assert.Equal(expectedOffset, t.Offset); // contiguous in info order, each aligned
            expectedOffset = GgufFile.Align(t.Offset + t.ByteLength, 64);
            Assert.Equal(data[name], file.GetBytes(name).ToArray());
        }
        Assert.Equal(2 * 256 * 3 / 256 * 144, file.GetTensor("blk.0.ffn_gate_exps.weight").ByteLength);
        Assert.Equal([3, 2, 256], file.GetTensor("blk.0.ffn_gate_exps.weight").TorchShape);
    }

    [Fact]
    public void MalformedFilesFailNamingTheProblem()
    {
        var path = WriteSample(out _);
        var bytes = File.ReadAllBytes(path);

        var truncated = TinyCalibrationModel.NewPath("truncated") + ".gguf";
        File.WriteAllBytes(truncated, bytes[..(bytes.Length - 100)]);
        var ex = Assert.Throws<CheckpointFormatException>(() => GgufFile.Open(truncated));
        Assert.Contains("runs past the end of the file", ex.Message);
        Assert.Equal("blk.0.attn_q.weight", ex.TensorName);

        var magic = TinyCalibrationModel.NewPath("magic") + ".gguf";
        var badMagic = (byte[])bytes.Clone();
        badMagic[0] = (byte)'X';
        File.WriteAllBytes(magic, badMagic);
        Assert.Contains("not a GGUF file", Assert.Throws<CheckpointFormatException>(() => GgufFile.Open(magic)).Message);

        var version = TinyCalibrationModel.NewPath("version") + ".gguf";
        var badVersion = (byte[])bytes.Clone();
        BinaryPrimitives.WriteUInt32LittleEndian(badVersion.AsSpan(4), 9);
        File.WriteAllBytes(version, badVersion);
        Assert.Contains("version 9", Assert.Throws<CheckpointFormatException>(() => GgufFile.Open(version)).Message);

        var header = TinyCalibrationModel.NewPath("header") + ".gguf";
        File.WriteAllBytes(header, bytes[..60]);
        Assert.IsAssignableFrom<MoeCompressException>(Assert.ThrowsAny<MoeCompressException>(() => GgufFile.Open(header)));
    }

    [Fact]
    public void WriterRejectsBadTensorsAndLeavesNothingBehindWhenNotCommitted()
    {
        var path = TinyCalibrationModel.NewPath("rejected") + ".gguf";
        Assert.Equal(ErrorKind.Usage, Assert.Throws<MoeCompressException>(() =>
            GgufWriter.Create(path, Metadata, [(new string('x', 64), [32], GgmlType.F32)])).Kind);
        Assert.Equal(ErrorKind.Usage, Assert.Throws<MoeCompressException>(() =>
            GgufWriter.Create(path, Metadata, [("a", [100], GgmlType.Q4_K)])).Kind);
        using (var writer = GgufWriter.Create(path, Metadata, Tensors))
            writer.WriteTensor("token_embd.weight", new byte[3 * 2 * 34]);
        Assert.False(File.Exists(path));
        Assert.Empty(Directory.GetFiles(Path.GetDirectoryName(path)!, $".{Path.GetFileName(path)}.tmp-*"));
    }
}
