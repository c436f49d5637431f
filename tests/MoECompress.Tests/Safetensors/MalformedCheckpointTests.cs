using MoECompress.Formats.Errors;
using MoECompress.Formats.Safetensors;

namespace MoECompress.Tests.Safetensors;

/// <summary>Every kind of damage from <see cref="CheckpointCorruptor"/> is refused with a one-line, precise error.</summary>
public class MalformedCheckpointTests
{
    public static TheoryData<string> AllKinds()
    {
        var data = new TheoryData<string>();
        foreach (var k in CheckpointCorruptor.Kinds) data.Add(k);
        return data;
    }

    public static TheoryData<string> ShardKinds()
    {
        var data = new TheoryData<string>();
        foreach (var k in CheckpointCorruptor.Kinds)
            if (!CheckpointCorruptor.IndexKinds.Contains(k)) data.Add(k);
        return data;
    }

    [Theory]
    [MemberData(nameof(AllKinds))]
    public void ShardedCheckpointCorruptionIsReportedPrecisely(string kind)
    {
        using var tmp = new TempDirectory();
        SafetensorsFixtures.CreateSharded(tmp.Sub("good"));
        var bad = CheckpointCorruptor.Apply(kind, tmp.Sub("good"), tmp.Sub("bad"));

        var ex = Assert.Throws<CheckpointFormatException>(() => SafetensorsCheckpoint.Open(bad.Directory));
        AssertReported(bad, ex);
        // The good original still opens: the corruptor never touches it.
        using var good = SafetensorsCheckpoint.Open(tmp.Sub("good"));
        Assert.Equal(6, good.Names.Count);
    }

    [Theory]
    [MemberData(nameof(ShardKinds))]
    public void SingleFileCorruptionIsReportedPrecisely(string kind)
    {
        using var tmp = new TempDirectory();
        SafetensorsFixtures.CreateSingle(tmp.Sub("good"));
        var bad = CheckpointCorruptor.Apply(kind, tmp.Sub("good"), tmp.Sub("bad"));

        var fromDirectory = Assert.Throws<CheckpointFormatException>(() => SafetensorsCheckpoint.Open(bad.Directory));
        AssertReported(bad, fromDirectory);
        var fromFile = Assert.Throws<CheckpointFormatException>(() => SafetensorsFile.Open(bad.AffectedFile));
        AssertReported(bad, fromFile);
    }

    [Fact]
    public void IndexKindsRefuseASingleFileCheckpoint()
    {
        using var tmp = new TempDirectory();
        SafetensorsFixtures.CreateSingle(tmp.Sub("good"));
        Assert.Throws<ArgumentException>(() => CheckpointCorruptor.Apply("index-not-json", tmp.Sub("good"), tmp.Sub("bad")));
    }

    [Fact]
    public void EveryCorruptionKindIsCovered()
    {
        // The brief's corpus: keep this list in step with CheckpointCorruptor.
        string[] expected =
        {
            "truncated-data", "header-length-past-eof", "header-length-absurd", "header-not-utf8", "header-invalid-json",
            "header-not-object", "unknown-dtype", "missing-data-offsets", "negative-shape", "non-integer-shape",
            "byte-count-mismatch", "offsets-out-of-range", "overlapping-offsets", "gap-between-tensors", "trailing-bytes",
            "duplicate-tensor-name", "non-string-metadata", "index-not-json", "index-without-weight-map",
            "index-missing-shard", "index-tensor-missing-from-shard", "shard-tensor-missing-from-index",
            "tensor-in-two-shards",
        };
        Assert.Equal(expected.OrderBy(s => s), CheckpointCorruptor.Kinds.OrderBy(s => s));
    }

    private static void AssertReported(CorruptedCheckpoint bad, CheckpointFormatException ex)
    {
        Assert.Equal(ErrorKind.InvalidCheckpoint, ex.Kind);
        Assert.Equal((int)ErrorKind.InvalidCheckpoint, ex.ExitCode);
        Assert.Equal(bad.AffectedFile, ex.FilePath);
        Assert.Contains(bad.AffectedFile, ex.Message);
        Assert.Contains(bad.ProblemFragment, ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
        Assert.Equal(bad.TensorName, ex.TensorName);
        if (bad.TensorName is not null) Assert.Contains($"'{bad.TensorName}'", ex.Message);
        if (bad.Offset is not null)
        {
            Assert.Equal(bad.Offset, ex.Offset);
            Assert.Contains($"byte offset {bad.Offset}", ex.Message);
        }
    }
}
