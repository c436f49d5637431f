using System.Text.Json.Nodes;
using MoECompress.Compression.Calibration;
using MoECompress.Compression.Model;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Families;
using MoECompress.Formats.Safetensors;

namespace MoECompress.Tests.Calibration;

/// <summary>Saving and loading a <see cref="CalibrationProfile"/>.</summary>
public sealed class CalibrationProfileTests
{
    private static readonly Lazy<CalibrationProfile> Profile = new(() =>
    {
        using var checkpoint = ModelCheckpoint.Open(TinyCalibrationModel.Mixtral);
        var engine = new ModelEngine(checkpoint.Tensors, checkpoint.Family, checkpoint.MoE, checkpoint.Config, checkpoint.ConfigPath);
        using var collector = new CalibrationCollector(new CalibrationCollectorOptions { MeanOutputOverAllTokens = true, KeepRouterLogits = true });
        var sequences = TinyCalibrationModel.RandomSequences(4, 8, 256, seed: 3);
        engine.CreateRunner().Run(sequences, null, collector);
        var profile = collector.Build(CalibrationModelInfo.From(checkpoint.MoE, checkpoint.Directory, "ab12", "test tokenizer"),
            new CalibrationDataInfo { Files = ["a.txt", "b.jsonl"], Documents = 2, Sequences = 4, SeqLen = 8, Seed = 9, Sampling = "Sequential" });
        profile.RouterLogits = collector.BuildRouterLogits(sequences);
        return profile;
    });

    [Fact]
    public void SaveThenLoadGivesBackEveryStatistic()
    {
        var original = Profile.Value;
        var dir = TinyCalibrationModel.NewPath("profile");
        var saved = original.Save(dir);
        Assert.Equal(Path.GetFullPath(dir), saved);
        Assert.True(File.Exists(Path.Combine(dir, CalibrationProfile.TensorFileName)));
        Assert.True(File.Exists(Path.Combine(dir, CheckpointManifest.FileName)));

        var loaded = CalibrationProfile.Load(dir);
        Assert.Equal(original.Model, loaded.Model);
        Assert.Equal(original.Data!.Files, loaded.Data!.Files);
        Assert.Equal(original.Data with { Files = loaded.Data.Files }, loaded.Data);
        Assert.Equal(original.Options, loaded.Options);
        Assert.Equal(original.Tokens, loaded.Tokens);
        Assert.Equal(original.ToolVersion, loaded.ToolVersion);
        Assert.Equal(original.CreatedUtc, loaded.CreatedUtc);
        Assert.Equal(original.Layers.Count, loaded.Layers.Count);
        Assert.All(loaded.Layers, l => Assert.False(l.MeanOutputLoaded)); // E×H tensors are read on first use
        foreach (var (a, b) in original.Layers.Zip(loaded.Layers))
        {
            Assert.Equal((a.Layer, a.NumExperts, a.TopK, a.HiddenSize, a.IntermediateSize, a.Tokens), (b.Layer, b.NumExperts, b.TopK, b.HiddenSize, b.IntermediateSize, b.Tokens));
            Assert.Equal(a.SelectionCount, b.SelectionCount);
            Assert.Equal(a.RoutedTokens, b.RoutedTokens);
            Assert.Equal(a.RoutingWeightMass, b.RoutingWeightMass);
            Assert.Equal(a.GateWeightMass, b.GateWeightMass);
            Assert.Equal(a.Tcess, b.Tcess);
            Assert.Equal(a.Reap, b.Reap);
            Assert.Equal(a.MaxAbsOutput, b.MaxAbsOutput);
            Assert.Equal(a.Coselection, b.Coselection);
            Assert.Equal(a.MeanOutput, b.MeanOutput);
            Assert.True(b.MeanOutputLoaded);
            Assert.Equal(a.MeanOutputAllTokens, b.MeanOutputAllTokens);
        }
        Assert.Equal(original.SuperExperts.Experts, loaded.SuperExperts.Experts);
        Assert.Equal(original.Coverage.ColdExperts, loaded.Coverage.ColdExperts);
        Assert.Equal(original.Coverage.ColdThreshold, loaded.Coverage.ColdThreshold);

        var dump = CalibrationProfile.LoadRouterLogits(Path.Combine(dir, CalibrationProfile.SummaryFileName));
        Assert.Equal(original.RouterLogits!.SequenceLengths, dump.SequenceLengths);
        Assert.Equal(original.RouterLogits.TokenIds, dump.TokenIds);
        foreach (var (layer, values) in original.RouterLogits.Layers) Assert.Equal(values, dump.Layers[layer]);
    }

    [Fact]
    public void SummaryJsonHoldsProvenanceTableSuperExpertsAndCoverage()
    {
        var profile = Profile.Value;
        var dir = TinyCalibrationModel.NewPath("profile-json");
        profile.Save(dir);
        var json = (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(dir, CalibrationProfile.SummaryFileName)))!;
        Assert.Equal(CalibrationProfile.FormatName, json["format"]!.GetValue<string>());
        Assert.Equal("mixtral", json["model"]!["family"]!.GetValue<string>());
        Assert.Equal("ab12", json["model"]!["config_sha256"]!.GetValue<string>());
        Assert.Equal(9, json["data"]!["seed"]!.GetValue<int>());
        Assert.Equal(32, json["tokens"]!.GetValue<long>());
        var layer0 = json["layers"]![0]!;
        var e3 = layer0["experts"]![3]!;
        Assert.Equal(profile.Layers[0].SelectionCount[3], e3["selection_count"]!.GetValue<long>());
        Assert.Equal(profile.Layers[0].Reap[3], e3["reap"]!.GetValue<double>());
        Assert.Equal(profile.SuperExperts.IsSuper(0, 3), e3["super"]!.GetValue<bool>());
        Assert.Equal(profile.SuperExperts.Experts.Count, json["super_experts"]!["experts"]!.AsArray().Count);
        Assert.Equal(profile.Coverage.ColdExperts.Count, json["coverage"]!["cold_experts"]!.AsArray().Count);
        Assert.NotNull(json["tensors"]!["router_logits"]);
    }

    [Fact]
    public void LoadNamesTheFileAndTensorThatIsMissing()
    {
        var dir = TinyCalibrationModel.NewPath("profile-src");
        Profile.Value.Save(dir);
        var broken = TinyCalibrationModel.NewPath("profile-broken");
        var missing = ProfileTensorNames.Tcess(2);
        using (var source = SafetensorsFile.Open(Path.Combine(dir, CalibrationProfile.TensorFileName)))
        {
            var plan = source.Tensors.Where(t => t.Name != missing).Select(TensorSpec.From).ToList();
            using var writer = CheckpointWriter.Create(broken, plan, new CheckpointWriterOptions
            {
                Layout = [new ShardLayout(CalibrationProfile.TensorFileName, plan.Select(p => p.Name).ToArray())],
                WriteIndex = false, FlushToDisk = false,
            });
            foreach (var spec in plan) writer.CopyTensorFrom(spec.Name, source);
            writer.WriteFile(CalibrationProfile.SummaryFileName, File.ReadAllBytes(Path.Combine(dir, CalibrationProfile.SummaryFileName)));
            writer.Commit();
        }

        var ex = Assert.Throws<CheckpointFormatException>(() => CalibrationProfile.Load(broken));
        Assert.Equal(ErrorKind.InvalidCheckpoint, ex.Kind);
        Assert.Equal(missing, ex.TensorName);
        Assert.Contains(CalibrationProfile.TensorFileName, ex.Message);
        Assert.Contains(missing, ex.Message);
    }

    [Fact]
    public void LoadWithoutTheSummaryOrOfAnotherFormatFails()
    {
        var dir = TinyCalibrationModel.NewPath("profile-nojson");
        Directory.CreateDirectory(dir);
        var ex = Assert.Throws<MoeCompressException>(() => CalibrationProfile.Load(dir));
        Assert.Equal(ErrorKind.Io, ex.Kind);
        Assert.Contains(CalibrationProfile.SummaryFileName, ex.Message);

        File.WriteAllText(Path.Combine(dir, CalibrationProfile.SummaryFileName), """{"format": "something-else", "format_version": 1}""");
        File.WriteAllBytes(Path.Combine(dir, CalibrationProfile.TensorFileName), []);
        var bad = Assert.Throws<CheckpointFormatException>(() => CalibrationProfile.Load(dir));
        Assert.Contains("something-else", bad.Message);
    }

    [Fact]
    public void AProfileMatchesItsOwnModelOnly()
    {
        using var mixtral = ModelCheckpoint.Open(TinyCalibrationModel.Mixtral);
        using var deepseek = ModelCheckpoint.Open(TinyCalibrationModel.DeepSeekV3);
        Profile.Value.EnsureMatches(mixtral.MoE);
        var ex = Assert.Throws<MoeCompressException>(() => Profile.Value.EnsureMatches(deepseek.MoE, "p/profile.json"));
        Assert.Equal(ErrorKind.Usage, ex.Kind);
        Assert.StartsWith("p/profile.json: was not gathered on this model (MoE layers", ex.Message);
        var fewer = Assert.Throws<MoeCompressException>(() => Profile.Value.EnsureMatches(mixtral.MoE with { NumExperts = 6 }));
        Assert.Contains("has 8 experts, the model 6", fewer.Message);
    }

    [Fact]
    public void SavingOverAnExistingFolderNeedsOverwrite()
    {
        var dir = TinyCalibrationModel.NewPath("profile-exists");
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "keep.txt"), "x");
        var ex = Assert.Throws<MoeCompressException>(() => Profile.Value.Save(dir));
        Assert.Equal(ErrorKind.Io, ex.Kind);
        Assert.True(File.Exists(Path.Combine(dir, "keep.txt")));

        Profile.Value.Save(dir, overwrite: true);
        Assert.False(File.Exists(Path.Combine(dir, "keep.txt")));
        Assert.Equal(Profile.Value.Tokens, CalibrationProfile.Load(dir).Tokens);
    }
}
