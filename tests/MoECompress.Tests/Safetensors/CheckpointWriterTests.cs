using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Safetensors;
using TorchSharp;

namespace MoECompress.Tests.Safetensors;

public class CheckpointWriterTests
{
    private static byte[] Pattern(int length, int seed)
    {
        var b = new byte[length];
        new Random(seed).NextBytes(b);
        return b;
    }

    private static string[] TempLeftovers(string parent) =>
        Directory.GetFileSystemEntries(parent, ".*").Where(p => p.Contains(".tmp-") || p.Contains(".old-")).ToArray();

    [Fact]
    public void WritesTheReferenceHeaderBytes()
    {
        using var tmp = new TempDirectory();
        var a = RawSafetensors.Bytes(1f, 2f);
        var b = new byte[] { 7, 8, 9 };
        var plan = new[] { new TensorSpec("a", SafetensorsDType.F32, new long[] { 2 }), new TensorSpec("b", SafetensorsDType.U8, new long[] { 3 }) };
        using (var w = CheckpointWriter.Create(tmp.Sub("out"), plan))
        {
            Assert.False(w.WritesIndex);
            Assert.Equal("model.safetensors", Assert.Single(w.Shards).FileName);
            w.Write("b", b);
            w.Write("a", a);
            w.Commit();
        }
        // What the reference serializer produces: compact JSON, __metadata__ first, spaces up to a multiple of 8.
        string json = "{\"__metadata__\":{\"format\":\"pt\"},\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}," +
                      "\"b\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[8,11]}}";
        var expected = RawSafetensors.FromHeaderText(json, a.Concat(b).ToArray());
        var actual = File.ReadAllBytes(Path.Combine(tmp.Sub("out"), "model.safetensors"));
        Assert.Equal(expected, actual);
        Assert.Equal(Encoding.ASCII.GetBytes(json.PadRight((json.Length + 7) / 8 * 8)), actual.AsSpan(8, actual.Length - 8 - 11).ToArray());
        Assert.False(File.Exists(Path.Combine(tmp.Sub("out"), "model.safetensors.index.json")));
        Assert.True(File.Exists(Path.Combine(tmp.Sub("out"), "moe-compress-manifest.json")));
        Assert.Empty(TempLeftovers(tmp.Path));
    }

    [Fact]
    public void ShardsByTheCapAndRegeneratesTheIndex()
    {
        using var tmp = new TempDirectory();
        // Bytes: 100, 100, 300 (over the cap: alone), 50, 50, 200 with a 250-byte cap.
        var sizes = new[] { 100, 100, 300, 50, 50, 200 };
        var plan = sizes.Select((s, i) => new TensorSpec($"t{i}", SafetensorsDType.U8, new long[] { s })).ToArray();
        var data = sizes.Select((s, i) => Pattern(s, i)).ToArray();
        using (var w = CheckpointWriter.Create(tmp.Sub("out"), plan, new CheckpointWriterOptions { MaxShardBytes = 250 }))
        {
            Assert.True(w.WritesIndex);
            Assert.Equal(new[] { "model-00001-of-00004.safetensors", "model-00002-of-00004.safetensors",
                "model-00003-of-00004.safetensors", "model-00004-of-00004.safetensors" }, w.Shards.Select(s => s.FileName));
            Assert.Equal(new[] { "t0,t1", "t2", "t3,t4", "t5" }, w.Shards.Select(s => string.Join(",", s.Tensors.Select(t => t.Name))));
            Assert.Equal(800, w.TotalTensorBytes);
            for (int i = 0; i < plan.Length; i++) w.Write(plan[i].Name, data[i]);
            Assert.Equal(800, w.WrittenTensorBytes);
            w.Commit();
        }

        string dir = tmp.Sub("out");
        var index = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "model.safetensors.index.json")))!;
        Assert.Equal(800, index["metadata"]!["total_size"]!.GetValue<long>());
        var map = index["weight_map"]!.AsObject().Select(kv => (kv.Key, kv.Value!.GetValue<string>())).ToArray();
        Assert.Equal(new[]
        {
            ("t0", "model-00001-of-00004.safetensors"), ("t1", "model-00001-of-00004.safetensors"),
            ("t2", "model-00002-of-00004.safetensors"), ("t3", "model-00003-of-00004.safetensors"),
            ("t4", "model-00003-of-00004.safetensors"), ("t5", "model-00004-of-00004.safetensors"),
        }, map);

        using var c = SafetensorsCheckpoint.Open(dir);
        Assert.Empty(c.Warnings);
        foreach (var f in c.ShardFiles) Assert.Equal(0, f.DataSectionOffset % 8);
        for (int i = 0; i < plan.Length; i++) Assert.True(c.GetBytes(plan[i].Name).SequenceEqual(data[i]));
    }

    [Fact]
    public void OutOfOrderParallelWritesGiveCorrectManifestHashes()
    {
        using var tmp = new TempDirectory();
        var plan = Enumerable.Range(0, 24).Select(i => new TensorSpec($"layer.{i:D2}.weight", SafetensorsDType.BF16, new long[] { 16 + i, 32 })).ToArray();
        var data = plan.Select((p, i) => Pattern((int)p.ByteLength, 100 + i)).ToArray();
        var options = new CheckpointWriterOptions
        {
            MaxShardBytes = 8_000, ToolVersion = "9.9.9-test", FlushToDisk = false,
            ManifestOptions = new JsonObject { ["command"] = "copy", ["bits"] = 4 },
        };
        using (var w = CheckpointWriter.Create(tmp.Sub("out"), plan, options))
        {
            Assert.True(w.Shards.Count > 3);
            var order = Enumerable.Range(0, plan.Length).OrderBy(i => (i * 7919) % 24).ToArray(); // a fixed shuffle
            Parallel.ForEach(order, new ParallelOptions { MaxDegreeOfParallelism = 4 }, i => w.Write(plan[i].Name, data[i]));
            w.SetManifestProperty("expert_map", new JsonObject { ["0"] = new JsonArray(0, 2) });
            w.Commit();
        }

        string dir = tmp.Sub("out");
        var manifest = CheckpointManifest.Read(dir);
        Assert.Equal("9.9.9-test", manifest.ToolVersion);
        Assert.Equal(plan.Length, manifest.TensorCount);
        Assert.Equal(plan.Sum(p => p.ByteLength), manifest.TotalTensorBytes);
        Assert.Equal("copy", manifest.Options!["command"]!.GetValue<string>());
        Assert.Equal(4, manifest.Options!["bits"]!.GetValue<int>());
        Assert.Equal(new[] { 0, 2 }, manifest.Json["expert_map"]!["0"]!.AsArray().Select(n => n!.GetValue<int>()));
        Assert.True((DateTimeOffset.UtcNow - manifest.CreatedUtc).Duration() < TimeSpan.FromMinutes(5));

        var shardFiles = Directory.GetFiles(dir, "*.safetensors").Select(Path.GetFileName).OrderBy(s => s).ToArray();
        Assert.Equal(shardFiles, manifest.Shards.Select(s => s.File));
        foreach (var s in manifest.Shards)
        {
            var bytes = File.ReadAllBytes(Path.Combine(dir, s.File));
            Assert.Equal(bytes.Length, s.Bytes);
            Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(bytes)), s.Sha256); // independent hash
        }
        var indexEntry = Assert.Single(manifest.Files);
        Assert.Equal("model.safetensors.index.json", indexEntry.File);
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(Path.Combine(dir, indexEntry.File)))), indexEntry.Sha256);
        Assert.Empty(manifest.Verify(dir));

        // Tampering is detected.
        string victim = Path.Combine(dir, manifest.Shards[1].File);
        var tampered = File.ReadAllBytes(victim);
        tampered[^1] ^= 0xFF;
        File.WriteAllBytes(victim, tampered);
        var problem = Assert.Single(manifest.Verify(dir));
        Assert.Contains(manifest.Shards[1].File, problem);

        using var c = SafetensorsCheckpoint.Open(dir);
        for (int i = 0; i < plan.Length - 1; i++)
            if (c.GetFile(plan[i].Name).Path != victim) Assert.True(c.GetBytes(plan[i].Name).SequenceEqual(data[i]));
    }

    [Fact]
    public void WithoutShardHashingTheManifestChecksSizes()
    {
        using var tmp = new TempDirectory();
        var plan = new[] { new TensorSpec("a", SafetensorsDType.U8, new long[] { 100 }), new TensorSpec("b", SafetensorsDType.U8, new long[] { 100 }) };
        using (var w = CheckpointWriter.Create(tmp.Sub("out"), plan, new CheckpointWriterOptions { HashShards = false, MaxShardBytes = 100 }))
        {
            w.Write("b", Pattern(100, 2));
            w.Write("a", Pattern(100, 1));
            w.Commit();
        }
        var manifest = CheckpointManifest.Read(tmp.Sub("out"));
        Assert.Equal(2, manifest.Shards.Count);
        Assert.All(manifest.Shards, s => Assert.Null(s.Sha256));
        Assert.NotNull(Assert.Single(manifest.Files).Sha256); // the index is still hashed
        Assert.Empty(manifest.Verify(tmp.Sub("out")));
        using var c = SafetensorsCheckpoint.Open(tmp.Sub("out"));
        Assert.True(c.GetBytes("a").SequenceEqual(Pattern(100, 1)));
        File.AppendAllText(Path.Combine(tmp.Sub("out"), manifest.Shards[0].File), "x");
        Assert.Contains("bytes, manifest says", Assert.Single(manifest.Verify(tmp.Sub("out"))));
    }

    [Fact]
    public void AnExceptionBeforeCommitLeavesNothingBehind()
    {
        using var tmp = new TempDirectory();
        var plan = new[] { new TensorSpec("a", SafetensorsDType.F32, new long[] { 4 }), new TensorSpec("b", SafetensorsDType.F32, new long[] { 4 }) };
        string? tempDir = null;
        var ex = Assert.Throws<InvalidOperationException>((Action)(() =>
        {
            using var w = CheckpointWriter.Create(tmp.Sub("out"), plan);
            tempDir = w.TemporaryDirectory;
            Assert.True(Directory.Exists(tempDir));
            Assert.StartsWith(Path.Combine(tmp.Path, ".out.tmp-"), tempDir);
            // Shard files are preallocated to their final size and already carry their header.
            var shard = Path.Combine(tempDir, "model.safetensors");
            Assert.Equal(w.Shards[0].FileLength, new FileInfo(shard).Length);
            w.Write("a", new byte[16]);
            throw new InvalidOperationException("boom");
        }));
        Assert.Equal("boom", ex.Message);
        Assert.False(Directory.Exists(tmp.Sub("out")));
        Assert.False(Directory.Exists(tempDir));
        Assert.Empty(TempLeftovers(tmp.Path));
    }

    [Fact]
    public void CommitRefusesUnwrittenTensors()
    {
        using var tmp = new TempDirectory();
        var plan = new[] { new TensorSpec("a", SafetensorsDType.F32, new long[] { 4 }), new TensorSpec("b", SafetensorsDType.F32, new long[] { 4 }) };
        using (var w = CheckpointWriter.Create(tmp.Sub("out"), plan))
        {
            w.Write("a", new byte[16]);
            var ex = Assert.Throws<InvalidOperationException>(() => w.Commit());
            Assert.Contains("1 planned tensor(s) were never written (b)", ex.Message);
        }
        Assert.False(Directory.Exists(tmp.Sub("out")));
        Assert.Empty(TempLeftovers(tmp.Path));
    }

    [Fact]
    public void RefusesAnExistingDestinationBeforeAnyWork()
    {
        using var tmp = new TempDirectory();
        Directory.CreateDirectory(tmp.Sub("out"));
        File.WriteAllText(Path.Combine(tmp.Sub("out"), "keep.txt"), "precious");
        var plan = new[] { new TensorSpec("a", SafetensorsDType.U8, new long[] { 1 }) };
        var ex = Assert.Throws<MoeCompressException>(() => CheckpointWriter.Create(tmp.Sub("out"), plan));
        Assert.Equal(ErrorKind.Io, ex.Kind);
        Assert.Contains(tmp.Sub("out"), ex.Message);
        Assert.Equal("precious", File.ReadAllText(Path.Combine(tmp.Sub("out"), "keep.txt")));
        Assert.Empty(TempLeftovers(tmp.Path));
    }

    [Fact]
    public void OverwriteReplacesTheOldCheckpointAfterTheNewOneIsComplete()
    {
        using var tmp = new TempDirectory();
        Directory.CreateDirectory(tmp.Sub("out"));
        File.WriteAllText(Path.Combine(tmp.Sub("out"), "old.txt"), "old");
        var plan = new[] { new TensorSpec("a", SafetensorsDType.U8, new long[] { 2 }) };
        using (var w = CheckpointWriter.Create(tmp.Sub("out"), plan, new CheckpointWriterOptions { Overwrite = true }))
        {
            Assert.True(File.Exists(Path.Combine(tmp.Sub("out"), "old.txt"))); // untouched until the commit
            w.Write("a", new byte[] { 1, 2 });
            w.Commit();
        }
        Assert.False(File.Exists(Path.Combine(tmp.Sub("out"), "old.txt")));
        using (var f = SafetensorsFile.Open(Path.Combine(tmp.Sub("out"), "model.safetensors")))
            Assert.Equal(new byte[] { 1, 2 }, f.GetBytes("a").ToArray());
        Assert.Empty(TempLeftovers(tmp.Path));
    }

    [Fact]
    public void WritesTorchTensorsAndChecksThem()
    {
        using var tmp = new TempDirectory();
        using var scope = torch.NewDisposeScope();
        var plan = new[]
        {
            new TensorSpec("w", SafetensorsDType.F32, new long[] { 2, 3 }),
            new TensorSpec("h", SafetensorsDType.BF16, new long[] { 4 }),
            new TensorSpec("f8", SafetensorsDType.F8_E4M3, new long[] { 3 }),
            new TensorSpec("u16", SafetensorsDType.U16, new long[] { 2 }),
        };
        var w32 = torch.arange(6, dtype: torch.ScalarType.Float32).reshape(2, 3);
        using (var w = CheckpointWriter.Create(tmp.Sub("out"), plan))
        {
            Assert.Throws<ArgumentException>(() => w.Write("w", w32.to_type(torch.ScalarType.Float64)));
            Assert.Throws<ArgumentException>(() => w.Write("w", w32.reshape(3, 2)));
            Assert.Throws<ArgumentException>(() => w.Write("w", w32.t()));       // not contiguous
            Assert.Throws<ArgumentException>(() => w.Write("ghost", w32));
            w.Write("w", w32);
            Assert.Throws<InvalidOperationException>(() => w.Write("w", w32));   // twice
            Assert.Throws<ArgumentException>(() => w.Write("h", new byte[7]));   // wrong size
            w.Write("h", torch.tensor(new float[] { 1, -2, 1.5f, 0 }).to_type(torch.ScalarType.BFloat16));
            w.Write("f8", torch.tensor(new byte[] { 0x38, 0x3C, 0x7E }));        // raw FP8 codes in a Byte tensor
            w.Write("u16", torch.tensor(new short[] { -1, 2 }));                  // raw bits: -1 is 65535
            w.Commit();
        }
        using var f = SafetensorsFile.Open(Path.Combine(tmp.Sub("out"), "model.safetensors"));
        Assert.Equal(new float[] { 0, 1, 2, 3, 4, 5 }, f.ToTensor("w").data<float>().ToArray());
        Assert.Equal(new float[] { 1, -2, 1.5f, 0 }, f.ToTensor("h", torch.ScalarType.Float32).data<float>().ToArray());
        Assert.Equal(new float[] { 1, 1.5f, 448 }, f.ToTensor("f8").data<float>().ToArray());
        Assert.Equal(new[] { 65535, 2 }, f.ToTensor("u16").data<int>().ToArray());
    }

    [Theory]
    [InlineData("dup")]
    [InlineData("negative")]
    [InlineData("reserved")]
    [InlineData("empty-name")]
    [InlineData("null-shape")]
    public void ValidatesThePlan(string problem)
    {
        using var tmp = new TempDirectory();
        var plan = problem switch
        {
            "dup" => new[] { new TensorSpec("a", SafetensorsDType.U8, new long[] { 1 }), new TensorSpec("a", SafetensorsDType.U8, new long[] { 2 }) },
            "negative" => new[] { new TensorSpec("a", SafetensorsDType.U8, new long[] { 2, -1 }) },
            "reserved" => new[] { new TensorSpec("__metadata__", SafetensorsDType.U8, new long[] { 1 }) },
            "empty-name" => new[] { new TensorSpec("", SafetensorsDType.U8, new long[] { 1 }) },
            _ => new[] { new TensorSpec("a", SafetensorsDType.U8, null!) },
        };
        Assert.Throws<ArgumentException>(() => CheckpointWriter.Create(tmp.Sub("out"), plan));
        Assert.False(Directory.Exists(tmp.Sub("out")));
        Assert.Empty(TempLeftovers(tmp.Path));
    }

    [Fact]
    public void MetadataDefaultsToFormatPtAndKeepsCallerEntries()
    {
        using var tmp = new TempDirectory();
        var plan = new[] { new TensorSpec("a", SafetensorsDType.U8, new long[] { 1 }) };
        using (var w = CheckpointWriter.Create(tmp.Sub("out"), plan, new CheckpointWriterOptions
               {
                   Metadata = new Dictionary<string, string> { ["quantization"] = "rtn-4bit" }, WriteIndex = true,
               }))
        {
            Assert.Equal("model-00001-of-00001.safetensors", Assert.Single(w.Shards).FileName);
            w.Write("a", new byte[] { 5 });
            w.Commit();
        }
        using var c = SafetensorsCheckpoint.Open(tmp.Sub("out"));
        Assert.True(c.IsSharded);
        var meta = c.ShardFiles[0].Metadata;
        Assert.Equal("pt", meta["format"]);
        Assert.Equal("rtn-4bit", meta["quantization"]);
    }

    [Fact]
    public void CopiesAuxiliaryFilesButNotWeightsOrExcludedNames()
    {
        using var tmp = new TempDirectory();
        SafetensorsFixtures.CreateSharded(tmp.Sub("src"));
        var plan = new[] { new TensorSpec("a", SafetensorsDType.U8, new long[] { 1 }) };
        IReadOnlyList<string> copied;
        using (var w = CheckpointWriter.Create(tmp.Sub("out"), plan))
        {
            w.Write("a", new byte[] { 1 });
            w.WriteTextFile("config.json", "{\"num_experts\": 6}");
            Assert.Throws<ArgumentException>(() => w.WriteTextFile("model.safetensors", "x"));
            Assert.Throws<ArgumentException>(() => w.WriteTextFile("moe-compress-manifest.json", "x"));
            Assert.Throws<ArgumentException>(() => w.WriteTextFile("../escape.txt", "x"));
            copied = w.CopyAuxiliaryFiles(tmp.Sub("src"), exclude: new[] { "README.md" });
            w.Commit();
        }
        var expected = SafetensorsFixtures.AuxiliaryFiles.Where(f => f is not ("config.json" or "README.md")).OrderBy(s => s, StringComparer.Ordinal);
        Assert.Equal(expected, copied);
        string dir = tmp.Sub("out");
        foreach (var f in copied)
            Assert.Equal(File.ReadAllBytes(Path.Combine(tmp.Sub("src"), f)), File.ReadAllBytes(Path.Combine(dir, f)));
        Assert.Equal("{\"num_experts\": 6}", File.ReadAllText(Path.Combine(dir, "config.json")));
        Assert.False(File.Exists(Path.Combine(dir, "README.md")));
        Assert.False(File.Exists(Path.Combine(dir, "pytorch_model.bin")));
        Assert.False(Directory.Exists(Path.Combine(dir, ".cache")));
        Assert.False(File.Exists(Path.Combine(dir, SafetensorsFixtures.Shard1Name)));
        Assert.Equal(new[] { "model.safetensors" }, Directory.GetFiles(dir, "*.safetensors").Select(Path.GetFileName));

        var manifest = CheckpointManifest.Read(dir);
        Assert.Equal(copied.Append("config.json").OrderBy(s => s, StringComparer.Ordinal), manifest.Files.Select(f => f.File));
        Assert.Empty(manifest.Verify(dir));
    }

    [Fact]
    public void ReservedManifestPropertiesAreRefused()
    {
        using var tmp = new TempDirectory();
        using var w = CheckpointWriter.Create(tmp.Sub("out"), new[] { new TensorSpec("a", SafetensorsDType.U8, new long[] { 1 }) });
        Assert.Throws<ArgumentException>(() => w.SetManifestProperty("shards", new JsonArray()));
    }

    [Fact]
    public void ExplicitLayoutMustCoverThePlan()
    {
        using var tmp = new TempDirectory();
        var plan = new[] { new TensorSpec("a", SafetensorsDType.U8, new long[] { 1 }), new TensorSpec("b", SafetensorsDType.U8, new long[] { 1 }) };
        var missing = new CheckpointWriterOptions { Layout = new[] { new ShardLayout("x.safetensors", new[] { "a" }) } };
        Assert.Throws<ArgumentException>(() => CheckpointWriter.Create(tmp.Sub("out"), plan, missing));
        var badName = new CheckpointWriterOptions { Layout = new[] { new ShardLayout("sub/x.safetensors", new[] { "a", "b" }) } };
        Assert.Throws<ArgumentException>(() => CheckpointWriter.Create(tmp.Sub("out"), plan, badName));
        Assert.Empty(TempLeftovers(tmp.Path));
    }
}
