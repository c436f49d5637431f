using System.Text.Json.Nodes;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Safetensors;

namespace MoECompress.Tests.Safetensors;

public class CheckpointCopierTests
{
    private static void AssertSameFile(string expected, string actual) =>
        Assert.True(File.ReadAllBytes(expected).AsSpan().SequenceEqual(File.ReadAllBytes(actual)), $"{actual} differs from {expected}");

    [Fact]
    public void ShardedRoundTripIsByteIdentical()
    {
        using var tmp = new TempDirectory();
        var data = SafetensorsFixtures.CreateSharded(tmp.Sub("src"));
        var progress = new List<CheckpointCopyProgress>();
        var result = CheckpointCopier.Copy(tmp.Sub("src"), tmp.Sub("copy"), new CheckpointCopyOptions
        {
            Writer = new CheckpointWriterOptions { FlushToDisk = false },
        }, new SyncProgress(progress));

        Assert.Equal(6, result.TensorCount);
        Assert.Equal(data.Values.Sum(d => (long)d.Length), result.TensorBytes);
        Assert.Equal(6, progress.Count);
        Assert.Equal(result.TensorBytes, progress[^1].BytesCopied);
        foreach (var shard in new[] { SafetensorsFixtures.Shard1Name, SafetensorsFixtures.Shard2Name })
            AssertSameFile(Path.Combine(tmp.Sub("src"), shard), Path.Combine(tmp.Sub("copy"), shard));
        foreach (var aux in SafetensorsFixtures.AuxiliaryFiles)
            AssertSameFile(Path.Combine(tmp.Sub("src"), aux), Path.Combine(tmp.Sub("copy"), aux));
        Assert.Equal(SafetensorsFixtures.AuxiliaryFiles.OrderBy(s => s, StringComparer.Ordinal), result.AuxiliaryFiles);

        var original = JsonNode.Parse(File.ReadAllText(Path.Combine(tmp.Sub("src"), "model.safetensors.index.json")))!;
        var copied = JsonNode.Parse(File.ReadAllText(Path.Combine(tmp.Sub("copy"), "model.safetensors.index.json")))!;
        Assert.True(JsonNode.DeepEquals(original, copied));
        Assert.Empty(CheckpointManifest.Read(tmp.Sub("copy")).Verify(tmp.Sub("copy")));

        // read → write → read again: still identical.
        CheckpointCopier.Copy(tmp.Sub("copy"), tmp.Sub("copy2"));
        foreach (var shard in new[] { SafetensorsFixtures.Shard1Name, SafetensorsFixtures.Shard2Name })
            AssertSameFile(Path.Combine(tmp.Sub("src"), shard), Path.Combine(tmp.Sub("copy2"), shard));
        using var c = SafetensorsCheckpoint.Open(tmp.Sub("copy2"));
        foreach (var (name, bytes) in data) Assert.True(c.GetBytes(name).SequenceEqual(bytes));
        Assert.False(File.Exists(Path.Combine(tmp.Sub("copy2"), "pytorch_model.bin")));
    }

    [Fact]
    public void SingleFileRoundTripIsByteIdentical()
    {
        using var tmp = new TempDirectory();
        SafetensorsFixtures.CreateSingle(tmp.Sub("src"));
        CheckpointCopier.Copy(tmp.Sub("src"), tmp.Sub("copy"));
        AssertSameFile(Path.Combine(tmp.Sub("src"), "model.safetensors"), Path.Combine(tmp.Sub("copy"), "model.safetensors"));
        Assert.False(File.Exists(Path.Combine(tmp.Sub("copy"), "model.safetensors.index.json")));
        var manifest = CheckpointManifest.Read(tmp.Sub("copy"));
        Assert.Equal(6, manifest.TensorCount);
        Assert.Empty(manifest.Verify(tmp.Sub("copy")));
    }

    [Fact]
    public void ResharingKeepsEveryTensorAndMergingBackMatchesAnIndependentBuild()
    {
        using var tmp = new TempDirectory();
        var data = SafetensorsFixtures.CreateSharded(tmp.Sub("src"));
        CheckpointCopier.Copy(tmp.Sub("src"), tmp.Sub("small"), new CheckpointCopyOptions
        {
            KeepShardLayout = false, Writer = new CheckpointWriterOptions { MaxShardBytes = 100 },
        });
        using (var c = SafetensorsCheckpoint.Open(tmp.Sub("small")))
        {
            Assert.True(c.ShardFiles.Count > 2);
            foreach (var (name, bytes) in data) Assert.True(c.GetBytes(name).SequenceEqual(bytes));
            Assert.All(c.ShardFiles, f => Assert.Equal("pt", f.Metadata["format"]));
        }

        CheckpointCopier.Copy(tmp.Sub("small"), tmp.Sub("one"), new CheckpointCopyOptions { KeepShardLayout = false });
        // One shard in index order (sorted names), built independently of the library.
        var all = SafetensorsFixtures.Shard1Entries().Concat(SafetensorsFixtures.Shard2Entries())
            .OrderBy(e => e.Name, StringComparer.Ordinal).ToArray();
        var expected = RawSafetensors.Build(all, SafetensorsFixtures.PtMetadata);
        Assert.Equal(expected, File.ReadAllBytes(Path.Combine(tmp.Sub("one"), "model.safetensors")));
    }

    [Fact]
    public void RefusesToCopyOntoItself()
    {
        using var tmp = new TempDirectory();
        SafetensorsFixtures.CreateSingle(tmp.Sub("src"));
        var ex = Assert.Throws<MoeCompressException>(() => CheckpointCopier.Copy(tmp.Sub("src"), tmp.Sub("src"),
            new CheckpointCopyOptions { Writer = new CheckpointWriterOptions { Overwrite = true } }));
        Assert.Equal(ErrorKind.Usage, ex.Kind);
        using var c = SafetensorsCheckpoint.Open(tmp.Sub("src"));
        Assert.Equal(6, c.Names.Count);
    }

    [Fact]
    public void CancellationLeavesNoOutput()
    {
        using var tmp = new TempDirectory();
        SafetensorsFixtures.CreateSharded(tmp.Sub("src"));
        using var cts = new CancellationTokenSource();
        var progress = new SyncProgress(new List<CheckpointCopyProgress>(), _ => cts.Cancel());
        Assert.ThrowsAny<OperationCanceledException>(() =>
            CheckpointCopier.Copy(tmp.Sub("src"), tmp.Sub("copy"), null, progress, cts.Token));
        Assert.False(Directory.Exists(tmp.Sub("copy")));
        Assert.Empty(Directory.GetFileSystemEntries(tmp.Path, ".copy.tmp-*"));
    }

    /// <summary>Reports synchronously (Progress&lt;T&gt; posts to the thread pool).</summary>
    private sealed class SyncProgress(List<CheckpointCopyProgress> sink, Action<CheckpointCopyProgress>? then = null)
        : IProgress<CheckpointCopyProgress>
    {
        public void Report(CheckpointCopyProgress value)
        {
            sink.Add(value);
            then?.Invoke(value);
        }
    }
}
