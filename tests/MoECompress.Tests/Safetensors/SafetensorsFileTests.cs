using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Safetensors;

namespace MoECompress.Tests.Safetensors;

public class SafetensorsFileTests
{
    /// <summary>The example of the reference implementation's documentation, byte for byte.</summary>
    private static byte[] ReferenceExample()
    {
        string header = "{\"test\":{\"dtype\":\"I32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}";
        var file = new byte[8 + header.Length + 16];
        BinaryPrimitives.WriteUInt64LittleEndian(file, (ulong)header.Length);
        Encoding.ASCII.GetBytes(header).CopyTo(file, 8);
        return file; // 16 zero bytes of data
    }

    [Fact]
    public void ReadsTheReferenceExample()
    {
        using var tmp = new TempDirectory();
        string path = tmp.Sub("example.safetensors");
        File.WriteAllBytes(path, ReferenceExample());
        using var f = SafetensorsFile.Open(path);
        Assert.Equal(path, f.Path);
        var info = Assert.Single(f.Tensors);
        Assert.Equal("test", info.Name);
        Assert.Equal(SafetensorsDType.I32, info.DType);
        Assert.Equal(new long[] { 2, 2 }, info.Shape);
        Assert.Equal(0, info.DataBegin);
        Assert.Equal(16, info.DataEnd);
        Assert.Equal(8 + 60, f.DataSectionOffset); // the documentation's prefix byte is '<' = 60
        Assert.False(f.HasMetadata);
        Assert.Empty(f.Metadata);
        Assert.Equal(new byte[16], f.GetBytes("test").ToArray());
        using var t = f.ToTensor("test");
        Assert.Equal(new long[] { 2, 2 }, t.shape);
        Assert.Equal(new[] { 0, 0, 0, 0 }, t.data<int>().ToArray());
    }

    [Fact]
    public void ZeroCopyViewEqualsTheFileBytesAndPointsIntoTheMapping()
    {
        using var tmp = new TempDirectory();
        var entries = SafetensorsFixtures.Shard1Entries();
        string path = tmp.Sub("a.safetensors");
        var bytes = RawSafetensors.Build(entries, SafetensorsFixtures.PtMetadata);
        File.WriteAllBytes(path, bytes);

        using var f = SafetensorsFile.Open(path);
        Assert.Equal(bytes.Length, f.FileLength);
        Assert.Equal(0, f.DataSectionOffset % 8);
        Assert.Equal("pt", f.Metadata["format"]);
        Assert.Equal(entries.Select(e => e.Name), f.Names);
        long offset = f.DataSectionOffset;
        foreach (var e in entries)
        {
            var view = f.GetBytes(e.Name);
            Assert.True(view.SequenceEqual(e.Data));
            Assert.True(view.SequenceEqual(bytes.AsSpan((int)offset, e.Data.Length)));
            Assert.Equal(offset, f.FileOffsetOf(e.Name));
            unsafe
            {
                fixed (byte* p = view)
                {
                    Assert.True(p == f.GetPointer(e.Name)); // same memory: no copy was made
                    fixed (byte* again = f.GetBytes(e.Name)) Assert.True(p == again);
                }
            }
            offset += e.Data.Length;
        }
    }

    [Fact]
    public void ChunkedAccessReadsEveryByte()
    {
        using var tmp = new TempDirectory();
        var entries = SafetensorsFixtures.Shard1Entries();
        string path = tmp.Sub("a.safetensors");
        File.WriteAllBytes(path, RawSafetensors.Build(entries, null));
        using var f = SafetensorsFile.Open(path);
        var e = entries[0]; // 64 bytes
        Assert.True(f.GetBytes(e.Name, 10, 20).SequenceEqual(e.Data.AsSpan(10, 20)));
        Assert.Throws<ArgumentOutOfRangeException>(() => f.GetBytes(e.Name, 60, 5).ToArray());

        var collected = new List<byte>();
        var buffer = new byte[7];
        for (long at = 0; at < e.Data.Length; )
        {
            int n = f.CopyTo(e.Name, buffer, at);
            Assert.True(n > 0);
            collected.AddRange(buffer.AsSpan(0, n).ToArray());
            at += n;
        }
        Assert.Equal(e.Data, collected.ToArray());
        Assert.Equal(0, f.CopyTo(e.Name, buffer, e.Data.Length));

        using var ms = new MemoryStream();
        f.CopyTo(e.Name, ms);
        Assert.Equal(e.Data, ms.ToArray());
        f.ReleaseMappedPages(e.Name); // pages come back on the next access
        Assert.True(f.GetBytes(e.Name).SequenceEqual(e.Data));
    }

    [Fact]
    public void KeepsHeaderOrderWhenItDiffersFromDataOrder()
    {
        using var tmp = new TempDirectory();
        string header = "{\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[3,5]}," +
                        "\"__metadata__\":{\"k\":\"v \\\"quoted\\\" \\u00e9\"}," +
                        "\"a\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]},\"z\":{\"dtype\":\"F32\",\"shape\":[0,4],\"data_offsets\":[5,5]}}";
        string path = tmp.Sub("x.safetensors");
        File.WriteAllBytes(path, RawSafetensors.FromHeaderText(header, new byte[] { 1, 2, 3, 4, 5 }, pad: false));
        using var f = SafetensorsFile.Open(path);
        Assert.Equal(new[] { "b", "a", "z" }, f.Names);
        Assert.Equal("v \"quoted\" é", f.Metadata["k"]);
        Assert.Equal(new byte[] { 4, 5 }, f.GetBytes("b").ToArray());
        Assert.Equal(new byte[] { 1, 2, 3 }, f.GetBytes("a").ToArray());
        Assert.Equal(0, f.GetBytes("z").Length);
        using var z = f.ToTensor("z");
        Assert.Equal(new long[] { 0, 4 }, z.shape);
    }

    [Fact]
    public void AcceptsAnEmptyFileWithNoTensors()
    {
        using var tmp = new TempDirectory();
        string path = tmp.Sub("empty.safetensors");
        File.WriteAllBytes(path, RawSafetensors.FromHeaderText("{}", Array.Empty<byte>()));
        using var f = SafetensorsFile.Open(path);
        Assert.Empty(f.Tensors);
        Assert.Equal(0, f.TotalTensorBytes);
    }

    [Fact]
    public void IgnoresUnknownEntryFieldsAsTheReferenceReaderDoes()
    {
        using var tmp = new TempDirectory();
        string header = "{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2],\"extra\":{\"x\":[1,2]}}}";
        string path = tmp.Sub("x.safetensors");
        File.WriteAllBytes(path, RawSafetensors.FromHeaderText(header, new byte[] { 7, 8 }));
        using var f = SafetensorsFile.Open(path);
        Assert.Equal(new byte[] { 7, 8 }, f.GetBytes("a").ToArray());
    }

    [Theory]
    [InlineData(new byte[0], "shorter than the 8-byte")]
    [InlineData(new byte[] { 1, 2, 3 }, "shorter than the 8-byte")]
    public void RefusesFilesShorterThanThePrefix(byte[] content, string fragment)
    {
        using var tmp = new TempDirectory();
        string path = tmp.Sub("short.safetensors");
        File.WriteAllBytes(path, content);
        var ex = Assert.Throws<CheckpointFormatException>(() => SafetensorsFile.Open(path));
        Assert.Equal(ErrorKind.InvalidCheckpoint, ex.Kind);
        Assert.Contains(path, ex.Message);
        Assert.Contains(fragment, ex.Message);
        Assert.Equal(0, ex.Offset);
    }

    [Theory]
    [InlineData("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", "duplicate tensor name")]
    [InlineData("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,0]},\"b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", "end before they begin")]
    [InlineData("{\"a\":{\"dtype\":\"bf16\",\"shape\":[2],\"data_offsets\":[0,2]}}", "unknown dtype 'bf16'")]
    [InlineData("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0]}}", "[begin, end]")]
    [InlineData("{\"a\":{\"dtype\":\"U8\",\"shape\":[\"2\"],\"data_offsets\":[0,2]}}", "non-negative integers")]
    [InlineData("{\"a\":{\"shape\":[2],\"data_offsets\":[0,2]}}", "no dtype")]
    [InlineData("{\"a\":{\"dtype\":\"U8\",\"data_offsets\":[0,2]}}", "no shape")]
    [InlineData("{\"a\":[1,2]}", "must be an object")]
    [InlineData("{\"__metadata__\":[\"pt\"],\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}", "__metadata__ must be an object")]
    [InlineData("{\"a\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,2]}}", "overflows")]
    [InlineData("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}} {}", "not valid JSON")]
    [InlineData("", "header is empty")]
    public void RefusesOtherMalformedHeaders(string header, string fragment)
    {
        using var tmp = new TempDirectory();
        string path = tmp.Sub("bad.safetensors");
        File.WriteAllBytes(path, RawSafetensors.FromHeaderText(header, new byte[] { 1, 2 }));
        var ex = Assert.Throws<CheckpointFormatException>(() => SafetensorsFile.Open(path));
        Assert.Equal(ErrorKind.InvalidCheckpoint, ex.Kind);
        Assert.Contains(path, ex.Message);
        Assert.Contains(fragment, ex.Message);
    }

    [Fact]
    public void MissingFileIsAnIoError()
    {
        using var tmp = new TempDirectory();
        var ex = Assert.Throws<CheckpointFormatException>(() => SafetensorsFile.Open(tmp.Sub("nope.safetensors")));
        Assert.Equal(ErrorKind.Io, ex.Kind);
        Assert.Contains("nope.safetensors", ex.Message);
    }

    [Fact]
    public void UnknownTensorIsNamed()
    {
        using var tmp = new TempDirectory();
        string path = tmp.Sub("a.safetensors");
        File.WriteAllBytes(path, RawSafetensors.Build(SafetensorsFixtures.Shard1Entries(), null));
        using var f = SafetensorsFile.Open(path);
        Assert.False(f.Contains("ghost"));
        var ex = Assert.Throws<CheckpointFormatException>(() => f.GetInfo("ghost"));
        Assert.Equal("ghost", ex.TensorName);
        Assert.Contains(path, ex.Message);
    }

    [Fact]
    public void NeverModifiesTheInputAndStopsAfterDispose()
    {
        using var tmp = new TempDirectory();
        string path = tmp.Sub("a.safetensors");
        File.WriteAllBytes(path, RawSafetensors.Build(SafetensorsFixtures.Shard1Entries(), SafetensorsFixtures.PtMetadata));
        var before = SHA256.HashData(File.ReadAllBytes(path));
        var mtime = File.GetLastWriteTimeUtc(path);
        var f = SafetensorsFile.Open(path);
        foreach (var n in f.Names)
        {
            using var t = f.ToTensor(n);
            f.ReleaseMappedPages(n);
        }
        f.Dispose();
        f.Dispose(); // idempotent
        Assert.Equal(before, SHA256.HashData(File.ReadAllBytes(path)));
        Assert.Equal(mtime, File.GetLastWriteTimeUtc(path));
        Assert.Throws<ObjectDisposedException>(() => f.GetBytes(SafetensorsFixtures.Shard1[0]).ToArray());
        // The file can be replaced once closed (no handle left behind).
        File.Delete(path);
    }
}
