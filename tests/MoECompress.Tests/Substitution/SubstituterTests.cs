using System.Text.Json.Nodes;
using MoECompress.Compression.Data;
using MoECompress.Compression.Evaluation;
using MoECompress.Compression.Model;
using MoECompress.Compression.Substitution;
using MoECompress.Compression.Surgery;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Families;
using MoECompress.Formats.Inspection;
using MoECompress.Tests.Calibration;
using MoECompress.Tests.Quantization;

namespace MoECompress.Tests.Substitution;

/// <summary>substitute on the tiny Mixtral checkpoint (4 layers × 8 experts, top-2): output, inspect, eval, baseline export, bad input.</summary>
public sealed class SubstituterTests
{
    private static SubstituteOptions Options(string output, SubstituteExport export = SubstituteExport.CompressedExperts) => new()
    {
        Model = TinyCalibrationModel.Mixtral,
        Output = output,
        Aux = 1,
        Export = export,
        Data = QuantizeTestData.TokenData,
        DataOptions = new CalibrationDataOptions { Samples = 6, SeqLen = 32 },
        Training = new CompressedExpertTraining { Steps = 6, LearningRate = 0.02, BatchTokens = 64 },
    };

    private static readonly Lazy<(string Output, SubstituteReport Report)> Substituted = new(() =>
    {
        var output = TinyCalibrationModel.NewPath("substituted");
        return (output, Substituter.Run(Options(output)));
    });

    [Fact]
    public void OutputCarriesTheVectorsAndTheConfigKeyAndInspectCountsFewerActiveParameters()
    {
        var (output, report) = Substituted.Value;
        using var checkpoint = ModelCheckpoint.Open(output);
        Assert.Equal(1, (int)checkpoint.Config[CompressedExpertsConfig.Key]!["aux"]!);
        var (c1, c2, c3) = CompressedExpertsConfig.TensorNames(checkpoint.Family, 2, checkpoint.MoE);
        Assert.Equal("model.layers.2.block_sparse_moe.compressed_experts.gate_input_scale", c1);
        Assert.Equal(new long[] { 8, checkpoint.MoE.ExpertIntermediateSize }, checkpoint.Tensors.GetInfo(c2).Shape);
        Assert.Equal(new long[] { 8, checkpoint.MoE.HiddenSize }, checkpoint.Tensors.GetInfo(c3).Shape);

        var before = CheckpointInspector.Inspect(TinyCalibrationModel.Mixtral);
        var after = CheckpointInspector.Inspect(output);
        Assert.Equal(1, after.CompressedExpertsAux);
        Assert.Null(before.CompressedExpertsAux);
        Assert.Equal(report.ActiveParametersBefore, before.ActiveParameters);
        Assert.Equal(report.ActiveParametersAfter, after.ActiveParameters);
        // One of two experts per token is no longer computed; the aux expert's vectors (2H + I each) are read instead.
        var m = checkpoint.MoE;
        Assert.Equal(before.ActiveParameters - 4 * before.ParametersPerExpert + 4 * (2L * m.HiddenSize + m.ExpertIntermediateSize), after.ActiveParameters);
        Assert.Contains("compressed experts", after.ToText());

        Assert.Equal(4, report.Layers.Count);
        Assert.All(report.Layers, l => Assert.True(l.FinalError < l.InitialError, $"layer {l.Layer}: {l.InitialError} → {l.FinalError}"));
        var csv = File.ReadAllLines(Path.Combine(output, SubstituteReport.LossCsvFile));
        Assert.Equal(1 + 4 * 6, csv.Length);
        Assert.True(File.Exists(Path.Combine(output, SubstituteReport.ReportMarkdownFile)));
    }

    [Fact]
    public void TheEngineRunsTheOutputAndEvalMeasuresIt()
    {
        var (output, _) = Substituted.Value;
        using var checkpoint = ModelCheckpoint.Open(output);
        var engine = new ModelEngine(checkpoint);
        Assert.Equal(1, engine.Config.CompressedExperts!.Aux);
        using (var layer = engine.LoadLayer(3))
        {
            Assert.NotNull(layer.MoE!.CompressedExperts);
            Assert.Equal(1, layer.MoE.CompressedExperts!.Aux);
        }

        // The tiny model's tokenizer does not match its 256-id vocabulary: evaluate on token ids through the library core.
        using var input = ModelCheckpoint.Open(TinyCalibrationModel.Mixtral);
        var tokens = TinyCalibrationModel.RandomSequences(1, 160, 256, seed: 4)[0];
        var metrics = Evaluator.Measure(engine, new ModelEngine(input), tokens, new EvaluationSettings(32, 16));
        Assert.True(metrics.MeanKl is > 0 and < 10, $"KL {metrics.MeanKl}");
        Assert.Equal(4, metrics.LayerErrors.Count);
        Assert.All(metrics.LayerErrors, e => Assert.True(e.RelativeError > 0));
    }

    [Fact]
    public void ReducedTopKExportIsAStandardCheckpointWithTopKLowered()
    {
        var output = TinyCalibrationModel.NewPath("reduced-topk");
        var report = Substituter.Run(Options(output, SubstituteExport.ReducedTopK));
        using var checkpoint = ModelCheckpoint.Open(output);
        Assert.Equal(1, checkpoint.MoE.TopK);
        Assert.False(checkpoint.Config.ContainsKey(CompressedExpertsConfig.Key));
        Assert.Equal(CheckpointInspector.Inspect(output).ActiveParameters, report.ActiveParametersAfter);
        Assert.Empty(report.Layers);
    }

    [Fact]
    public void BadRequestsFailBeforeAnyWork()
    {
        var output = TinyCalibrationModel.NewPath("substitute-bad");
        var tooMany = Assert.Throws<MoeCompressException>(() => Substituter.Run(Options(output) with { Aux = 2 }));
        Assert.Equal(ErrorKind.Infeasible, tooMany.Kind);
        Assert.Contains("top-2", tooMany.Message);
        Assert.False(Directory.Exists(output));

        var none = Assert.Throws<MoeCompressException>(() => Substituter.Run(Options(output) with { Aux = 0 }));
        Assert.Equal(ErrorKind.Usage, none.Kind);

        var existing = TinyCalibrationModel.NewPath("substitute-exists");
        Directory.CreateDirectory(existing);
        var exists = Assert.Throws<MoeCompressException>(() => Substituter.Run(Options(existing)));
        Assert.Equal(ErrorKind.Io, exists.Kind);

        var (substituted, _) = Substituted.Value;
        var again = Assert.Throws<MoeCompressException>(() => Substituter.Run(Options(output) with { Model = substituted }));
        Assert.Equal(ErrorKind.Usage, again.Kind);
        Assert.Contains(CompressedExpertsConfig.Key, again.Message);
    }

    [Fact]
    public void SurgeryRefusesASubstitutedCheckpoint()
    {
        var (output, _) = Substituted.Value;
        using var checkpoint = ModelCheckpoint.Open(output);
        var plan = new ExpertSurgeryPlan
        {
            Operation = "prune",
            Layers = Enumerable.Range(0, 4).ToDictionary(l => l, _ => (IReadOnlyList<OutputExpert>)Enumerable.Range(0, 6).Select(OutputExpert.Copy).ToList()),
        };
        var e = Assert.Throws<MoeCompressException>(() => ExpertSurgery.Write(checkpoint, plan, TinyCalibrationModel.NewPath("pruned-after")));
        Assert.Equal(ErrorKind.Infeasible, e.Kind);
    }

    [Fact]
    public void AnInvalidAuxInConfigIsRefusedNamingTheKey()
    {
        var config = new JsonObject { [CompressedExpertsConfig.Key] = new JsonObject { ["aux"] = 2 } };
        var e = Assert.Throws<MoeCompressException>(() => CompressedExpertsConfig.Read(config, "config.json", topK: 2));
        Assert.Equal(ErrorKind.InvalidConfig, e.Kind);
        Assert.Contains("compressed_experts.aux", e.Message);
        config[CompressedExpertsConfig.Key] = "yes";
        Assert.Equal(ErrorKind.InvalidConfig, Assert.Throws<MoeCompressException>(() => CompressedExpertsConfig.Read(config, "config.json", 2)).Kind);
        Assert.Null(CompressedExpertsConfig.Read(new JsonObject(), "config.json", 2));
    }
}
