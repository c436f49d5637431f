using MoECompress.Formats.Safetensors;

namespace MoECompress.Tests.Safetensors;

/// <summary>Real index files written by transformers (tests/data/configs) as the oracle for reading and writing indexes.</summary>
public class SafetensorsIndexTests
{
    private static string ConfigsDir() => Path.Combine(Infrastructure.RepoPaths.TestData, "configs");

    [Fact]
    public void ReadsTheMixtralIndexAndWritesItBackByteForByte()
    {
        string path = Path.Combine(ConfigsDir(), "Mixtral-8x7B-v0.1", "model.safetensors.index.json");
        var index = SafetensorsIndex.Read(path);
        Assert.Equal(995, index.TensorNames.Count);
        Assert.Equal(19, index.WeightMap.Values.Distinct().Count());
        Assert.Equal(93405585408, index.TotalSize);
        Assert.Equal("model-00019-of-00019.safetensors", index.WeightMap["lm_head.weight"]);
        Assert.Empty(index.Warnings);
        // transformers writes json.dumps(index, indent=2, sort_keys=True) + "\n": Encode must match it exactly.
        Assert.Equal(File.ReadAllBytes(path), SafetensorsIndex.Encode(index.WeightMap, index.TotalSize!.Value));
    }

    [Fact]
    public void ReadsALargeRealIndex()
    {
        string path = Path.Combine(ConfigsDir(), "Qwen3.5-18B-REAP-A3B-Coding", "model.safetensors.index.json");
        var index = SafetensorsIndex.Read(path);
        Assert.Equal(15973, index.TensorNames.Count);
        Assert.Equal(7, index.WeightMap.Values.Distinct().Count());
        Assert.Equal(37087995136, index.TotalSize);
        // Same content once re-encoded (this file was written without the final newline).
        Assert.Equal(File.ReadAllText(path).TrimEnd('\n'), System.Text.Encoding.UTF8.GetString(
            SafetensorsIndex.Encode(index.WeightMap, index.TotalSize!.Value)).TrimEnd('\n'));
    }

    [Fact]
    public void RefusesDuplicateAndNonStringEntries()
    {
        using var tmp = new TempDirectory();
        string path = tmp.Sub("model.safetensors.index.json");
        File.WriteAllText(path, "{\"weight_map\": {\"a\": \"x.safetensors\", \"a\": \"y.safetensors\"}}");
        var dup = Assert.Throws<MoECompress.Formats.Errors.CheckpointFormatException>(() => SafetensorsIndex.Read(path));
        Assert.Contains("$.weight_map", dup.Message); // refused by the strict JSON reader, naming the JSON path
        Assert.Contains("duplicate key 'a'", dup.Message);

        File.WriteAllText(path, "{\"weight_map\": {\"a\": 3}}");
        var number = Assert.Throws<MoECompress.Formats.Errors.CheckpointFormatException>(() => SafetensorsIndex.Read(path));
        Assert.Equal("a", number.TensorName);

        File.WriteAllText(path, "{\"metadata\": {\"total_size\": \"big\"}, \"weight_map\": {}}");
        var odd = SafetensorsIndex.Read(path);
        Assert.Null(odd.TotalSize);
        Assert.Single(odd.Warnings);
    }
}
