using System.Buffers.Binary;
using System.Text;
using MoECompress.Formats.Safetensors;

namespace MoECompress.Tests.Safetensors;

/// <summary>
/// Expected bytes from the reference implementation's own serialization tests (huggingface/safetensors,
/// safetensors/src/tensor.rs: test_serialization, test_serialization_forced_alignement, test_empty), written here as
/// text + floats for readability. Our encoder and writer must produce exactly these files.
/// </summary>
public class ReferenceSerializationTests
{
    private static byte[] File(int headerLength, string headerText, byte[] data)
    {
        var json = Encoding.ASCII.GetBytes(headerText);
        Assert.True(json.Length <= headerLength);
        var bytes = new byte[8 + headerLength + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)headerLength);
        json.CopyTo(bytes, 8);
        bytes.AsSpan(8 + json.Length, headerLength - json.Length).Fill((byte)' ');
        data.CopyTo(bytes, 8 + headerLength);
        return bytes;
    }

    private static readonly byte[] ZeroToFive = RawSafetensors.Bytes(0f, 1f, 2f, 3f, 4f, 5f);

    private static byte[] Encode(string name, long[] shape, IReadOnlyDictionary<string, string>? metadata, byte[] data)
    {
        var tensors = name.Length == 0 ? Array.Empty<TensorInfo>()
            : new[] { new TensorInfo(name, SafetensorsDType.F32, shape, 0, data.Length) };
        return SafetensorsHeader.Encode(tensors, metadata).Concat(data).ToArray();
    }

    [Fact]
    public void MatchesTestSerialization() =>
        // 64-byte header, already a multiple of 8: no padding.
        Assert.Equal(File(64, "{\"attn.0\":{\"dtype\":\"F32\",\"shape\":[1,2,3],\"data_offsets\":[0,24]}}", ZeroToFive),
            Encode("attn.0", new long[] { 1, 2, 3 }, null, ZeroToFive));

    [Fact]
    public void MatchesTestSerializationForcedAlignment() =>
        // 65 bytes of JSON padded with 7 spaces to 72.
        Assert.Equal(File(72, "{\"attn0\":{\"dtype\":\"F32\",\"shape\":[1,1,2,3],\"data_offsets\":[0,24]}}", ZeroToFive),
            Encode("attn0", new long[] { 1, 1, 2, 3 }, null, ZeroToFive));

    [Fact]
    public void MatchesTestEmpty()
    {
        Assert.Equal(File(8, "{}", Array.Empty<byte>()), Encode("", Array.Empty<long>(), null, Array.Empty<byte>()));
        var framework = new Dictionary<string, string> { ["framework"] = "pt" };
        Assert.Equal(File(40, "{\"__metadata__\":{\"framework\":\"pt\"}}", Array.Empty<byte>()),
            Encode("", Array.Empty<long>(), framework, Array.Empty<byte>()));
    }

    [Fact]
    public void WriterProducesTheReferenceFileWithAnExplicitLayout()
    {
        using var tmp = new TempDirectory();
        var options = new CheckpointWriterOptions
        {
            Layout = new[] { new ShardLayout("model.safetensors", new[] { "attn0" }) { Metadata = new Dictionary<string, string>() } },
            FlushToDisk = false,
        };
        using (var w = CheckpointWriter.Create(tmp.Sub("out"), new[] { new TensorSpec("attn0", SafetensorsDType.F32, new long[] { 1, 1, 2, 3 }) }, options))
        {
            w.Write("attn0", ZeroToFive);
            w.Commit();
        }
        Assert.Equal(File(72, "{\"attn0\":{\"dtype\":\"F32\",\"shape\":[1,1,2,3],\"data_offsets\":[0,24]}}", ZeroToFive),
            System.IO.File.ReadAllBytes(Path.Combine(tmp.Sub("out"), "model.safetensors")));
    }

    [Fact]
    public void ReadsTheReferenceEmptyShapeExample()
    {
        // test_empty_shapes_allowed: a scalar I32 with an unpadded 56-byte header.
        using var tmp = new TempDirectory();
        string path = tmp.Sub("scalar.safetensors");
        System.IO.File.WriteAllBytes(path, File(56, "{\"test\":{\"dtype\":\"I32\",\"shape\":[],\"data_offsets\":[0,4]}}", new byte[4]));
        using var f = SafetensorsFile.Open(path);
        var info = Assert.Single(f.Tensors);
        Assert.Empty(info.Shape);
        Assert.Equal(4, f.GetBytes("test").Length);
    }
}
