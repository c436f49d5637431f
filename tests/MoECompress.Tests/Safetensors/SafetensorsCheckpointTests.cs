using System.Text.Json.Nodes;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Safetensors;

namespace MoECompress.Tests.Safetensors;

public class SafetensorsCheckpointTests
{
    [Fact]
    public void OpensAShardedCheckpoint()
    {
        using var tmp = new TempDirectory();
        var data = SafetensorsFixtures.CreateSharded(tmp.Sub("ckpt"));
        using var c = SafetensorsCheckpoint.Open(tmp.Sub("ckpt"));

        Assert.True(c.IsSharded);
        Assert.Equal(tmp.Sub("ckpt"), c.Directory);
        Assert.Equal(Path.Combine(tmp.Sub("ckpt"), "model.safetensors.index.json"), c.IndexPath);
        Assert.Equal(new[] { SafetensorsFixtures.Shard1Name, SafetensorsFixtures.Shard2Name },
            c.ShardFiles.Select(f => Path.GetFileName(f.Path)));
        Assert.Equal(data.Keys.OrderBy(k => k, StringComparer.Ordinal), c.Names); // index order (sorted by the fixture)
        long total = data.Values.Sum(d => (long)d.Length);
        Assert.Equal(total, c.TotalTensorBytes);
        Assert.Equal(total, c.IndexMetadata!["total_size"]!.GetValue<long>());
        Assert.Empty(c.Warnings);
        foreach (var (name, bytes) in data)
        {
            Assert.True(c.Contains(name));
            Assert.True(c.GetBytes(name).SequenceEqual(bytes));
            string expectedShard = SafetensorsFixtures.Shard1.Contains(name) ? SafetensorsFixtures.Shard1Name : SafetensorsFixtures.Shard2Name;
            Assert.Equal(expectedShard, Path.GetFileName(c.GetFile(name).Path));
            Assert.Equal(expectedShard, c.Index!.WeightMap[name]);
        }
        var ex = Assert.Throws<CheckpointFormatException>(() => c.GetInfo("ghost"));
        Assert.Equal("ghost", ex.TensorName);
    }

    [Fact]
    public void OpensTheSameCheckpointFromItsIndexFile()
    {
        using var tmp = new TempDirectory();
        SafetensorsFixtures.CreateSharded(tmp.Sub("ckpt"));
        using var c = SafetensorsCheckpoint.Open(Path.Combine(tmp.Sub("ckpt"), "model.safetensors.index.json"));
        Assert.True(c.IsSharded);
        Assert.Equal(6, c.Names.Count);
    }

    [Fact]
    public void OpensSingleFileCheckpoints()
    {
        using var tmp = new TempDirectory();
        var data = SafetensorsFixtures.CreateSingle(tmp.Sub("ckpt"));
        using (var c = SafetensorsCheckpoint.Open(tmp.Sub("ckpt")))
        {
            Assert.False(c.IsSharded);
            Assert.Null(c.IndexPath);
            Assert.Single(c.ShardFiles);
            Assert.Equal(data.Keys, c.Names); // header order
        }
        using (var c = SafetensorsCheckpoint.Open(Path.Combine(tmp.Sub("ckpt"), "model.safetensors")))
            Assert.Equal(6, c.Names.Count);

        // Any single *.safetensors in a folder without model.safetensors.
        Directory.CreateDirectory(tmp.Sub("other"));
        File.Copy(Path.Combine(tmp.Sub("ckpt"), "model.safetensors"), Path.Combine(tmp.Sub("other"), "consolidated.safetensors"));
        using (var c = SafetensorsCheckpoint.Open(tmp.Sub("other")))
            Assert.Equal("consolidated.safetensors", Path.GetFileName(c.ShardFiles[0].Path));
    }

    [Fact]
    public void RefusesFoldersWithoutUnambiguousWeights()
    {
        using var tmp = new TempDirectory();
        Directory.CreateDirectory(tmp.Sub("empty"));
        var none = Assert.Throws<CheckpointFormatException>(() => SafetensorsCheckpoint.Open(tmp.Sub("empty")));
        Assert.Equal(ErrorKind.InvalidCheckpoint, none.Kind);
        Assert.Contains(tmp.Sub("empty"), none.Message);

        SafetensorsFixtures.CreateSharded(tmp.Sub("two"));
        File.Delete(Path.Combine(tmp.Sub("two"), "model.safetensors.index.json"));
        var two = Assert.Throws<CheckpointFormatException>(() => SafetensorsCheckpoint.Open(tmp.Sub("two")));
        Assert.Contains("2 .safetensors files but no model.safetensors.index.json", two.Message);

        var missing = Assert.Throws<CheckpointFormatException>(() => SafetensorsCheckpoint.Open(tmp.Sub("nowhere")));
        Assert.Equal(ErrorKind.Io, missing.Kind);
    }

    [Fact]
    public void WrongTotalSizeIsOnlyAWarning()
    {
        using var tmp = new TempDirectory();
        SafetensorsFixtures.CreateSharded(tmp.Sub("ckpt"));
        string index = Path.Combine(tmp.Sub("ckpt"), "model.safetensors.index.json");
        var json = JsonNode.Parse(File.ReadAllText(index))!.AsObject();
        json["metadata"]!["total_size"] = 12345;
        File.WriteAllText(index, json.ToJsonString());
        using var c = SafetensorsCheckpoint.Open(tmp.Sub("ckpt"));
        var warning = Assert.Single(c.Warnings);
        Assert.Contains("total_size is 12345", warning);
        Assert.Contains(index, warning);
    }

    [Fact]
    public void RefusesShardPathsOutsideTheCheckpoint()
    {
        using var tmp = new TempDirectory();
        SafetensorsFixtures.CreateSharded(tmp.Sub("ckpt"));
        string index = Path.Combine(tmp.Sub("ckpt"), "model.safetensors.index.json");
        var json = JsonNode.Parse(File.ReadAllText(index))!.AsObject();
        json["weight_map"]!["lm_head.weight"] = "../elsewhere.safetensors";
        File.WriteAllText(index, json.ToJsonString());
        var ex = Assert.Throws<CheckpointFormatException>(() => SafetensorsCheckpoint.Open(tmp.Sub("ckpt")));
        Assert.Equal("lm_head.weight", ex.TensorName);
        Assert.Contains("not a relative path inside", ex.Message);
    }
}
