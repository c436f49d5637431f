using System.Text.Json.Nodes;
using MoECompress.Formats.Safetensors;
using MoECompress.Formats.Synthetic;
using MoECompress.Tests.Safetensors;

namespace MoECompress.Tests.Cli;

/// <summary>A good Mixtral-layout checkpoint (several shards) generated once for the whole class.</summary>
public sealed class GoodCheckpointFixture : IDisposable
{
    public string Root { get; } = Path.Combine(Path.GetTempPath(), "moe-cli-bad-" + Guid.NewGuid().ToString("N")[..10]);
    public string Good => Path.Combine(Root, "good");

    public GoodCheckpointFixture()
    {
        Directory.CreateDirectory(Root);
        SyntheticCheckpoint.Write("mixtral", Good, new SyntheticOptions { Seed = 7, ShardBytes = 200_000 });
    }

    public void Dispose()
    {
        if (Directory.Exists(Root)) Directory.Delete(Root, true);
    }
}

/// <summary>
/// The malformed-checkpoint corpus through the real command line: every case gives one error line naming the file (and
/// the tensor and byte offset where they apply), its documented exit code, and leaves no output folder behind.
/// </summary>
public class BadInputTests(GoodCheckpointFixture fixture) : IClassFixture<GoodCheckpointFixture>
{
    public static TheoryData<string> FileKinds() => new(CheckpointCorruptor.Kinds);

    [Theory]
    [MemberData(nameof(FileKinds))]
    public void MalformedSafetensorsFailsWithExitCode3AndNoOutput(string kind)
    {
        var case_ = CheckpointCorruptor.Apply(kind, fixture.Good, Path.Combine(fixture.Root, "bad-" + kind));
        var result = AssertFailsCleanly("bad-" + kind, case_.Directory, expectedExit: 3);
        var line = result.StderrLines.Single();
        Assert.Contains(case_.AffectedFile, line);
        if (case_.TensorName is not null) Assert.Contains($"'{case_.TensorName}'", line);
        if (case_.Offset is not null) Assert.Contains($"offset {case_.Offset}", line);
    }

    [Fact]
    public void ConfigDisagreeingWithTensorsFailsWithExitCode4()
    {
        var dir = CopyGood("bad-config-count");
        var configPath = Path.Combine(dir, "config.json");
        var config = JsonNode.Parse(File.ReadAllText(configPath))!.AsObject();
        config["num_local_experts"] = config["num_local_experts"]!.GetValue<int>() - 2;
        File.WriteAllText(configPath, config.ToJsonString());
        var line = AssertFailsCleanly("bad-config-count", dir, expectedExit: 4).StderrLines.Single();
        Assert.Contains("config.json", line);
        Assert.Contains("num_local_experts", line);
        Assert.Contains("model.layers.", line);
    }

    [Fact]
    public void UnsupportedArchitectureListsTheSupportedOnes()
    {
        var dir = CopyGood("bad-arch");
        var configPath = Path.Combine(dir, "config.json");
        var config = JsonNode.Parse(File.ReadAllText(configPath))!.AsObject();
        config["architectures"] = new JsonArray("FancyNewMoEForCausalLM");
        config["model_type"] = "fancy_moe";
        File.WriteAllText(configPath, config.ToJsonString());
        var line = AssertFailsCleanly("bad-arch", dir, expectedExit: 4).StderrLines.Single();
        Assert.Contains("FancyNewMoEForCausalLM", line);
        Assert.Contains("MixtralForCausalLM", line);
        Assert.Contains("DeepseekV3ForCausalLM", line);
    }

    [Fact]
    public void InvalidConfigJsonFailsWithExitCode4()
    {
        var dir = CopyGood("bad-config-json");
        File.WriteAllText(Path.Combine(dir, "config.json"), "{ \"architectures\": [\"MixtralForCausalLM\"], ");
        var line = AssertFailsCleanly("bad-config-json", dir, expectedExit: 4).StderrLines.Single();
        Assert.Contains(Path.Combine(dir, "config.json"), line);
    }

    [Theory]
    [InlineData(float.NaN)]
    [InlineData(float.PositiveInfinity)]
    public void NonFiniteRouterWeightFailsWithExitCode5(float bad)
    {
        string name = "bad-router-" + (float.IsNaN(bad) ? "nan" : "inf");
        var dir = CopyGood(name);
        const string router = "model.layers.1.block_sparse_moe.gate.weight";
        string shard;
        long at;
        using (var ckpt = SafetensorsCheckpoint.Open(dir))
        {
            var file = ckpt.GetFile(router);
            shard = file.Path;
            var info = file.GetInfo(router);
            Assert.Equal(SafetensorsDType.BF16, info.DType);
            at = file.DataSectionOffset + info.DataBegin + 2 * 5; // element 5
        }
        ushort bf16 = (ushort)(BitConverter.SingleToUInt32Bits(bad) >> 16);
        using (var fs = new FileStream(shard, FileMode.Open, FileAccess.Write))
        {
            fs.Position = at;
            fs.Write(BitConverter.GetBytes(bf16));
        }
        var line = AssertFailsCleanly(name, dir, expectedExit: 5).StderrLines.Single();
        Assert.Contains(router, line);
    }

    [Fact]
    public void MissingInputFolderFailsWithExitCode4()
    {
        var missing = Path.Combine(fixture.Root, "no-such-checkpoint");
        var line = AssertFailsCleanly("missing", missing, expectedExit: 4).StderrLines.Single();
        Assert.Contains(missing, line);
    }

    [Fact]
    public void ExistingDestinationIsRefusedWithExitCode7AndLeftUntouched()
    {
        var output = Path.Combine(fixture.Root, "existing-out");
        Directory.CreateDirectory(output);
        File.WriteAllText(Path.Combine(output, "keep.txt"), "mine");
        var r = CliRunner.Run("reshard", fixture.Good, output);
        Assert.Equal(7, r.ExitCode);
        Assert.Equal("mine", File.ReadAllText(Path.Combine(output, "keep.txt")));
        Assert.Single(Directory.GetFileSystemEntries(output));
    }

    [Fact]
    public void GoodCheckpointReshardsAndReloadsByteIdentical()
    {
        var output = Path.Combine(fixture.Root, "good-copy");
        var r = CliRunner.Run("reshard", fixture.Good, output);
        Assert.True(r.ExitCode == 0, r.Stderr);
        foreach (var shard in Directory.GetFiles(fixture.Good, "*.safetensors"))
            Assert.Equal(File.ReadAllBytes(shard), File.ReadAllBytes(Path.Combine(output, Path.GetFileName(shard))));
        Assert.True(File.Exists(Path.Combine(output, "moe-compress-manifest.json")));
        Assert.Equal(File.ReadAllText(Path.Combine(fixture.Good, "config.json")), File.ReadAllText(Path.Combine(output, "config.json")));
    }

    private string CopyGood(string name)
    {
        var dir = Path.Combine(fixture.Root, name);
        CheckpointCorruptor.CopyDirectory(fixture.Good, dir);
        return dir;
    }

    private CliRunner.Result AssertFailsCleanly(string name, string input, int expectedExit)
    {
        var output = Path.Combine(fixture.Root, name + "-out");
        var before = Directory.GetFileSystemEntries(fixture.Root).Order().ToArray();
        var r = CliRunner.Run("reshard", input, output);
        Assert.True(expectedExit == r.ExitCode, $"exit {r.ExitCode}, stderr: {r.Stderr}");
        Assert.Empty(r.Stdout);
        Assert.StartsWith("moe-compress: error: ", r.StderrLines.Single());
        Assert.False(Directory.Exists(output));
        Assert.Equal(before, Directory.GetFileSystemEntries(fixture.Root).Order().ToArray()); // no temp folder left
        return r;
    }
}
