using System.Text.Json.Nodes;
using MoECompress.Compression.Evaluation;
using MoECompress.Compression.Substitution;
using MoECompress.Formats.Errors;
using MoECompress.Tests.Cli;
using MoECompress.Tests.Evaluation;
using MoECompress.Tests.Tokenization;

namespace MoECompress.Tests.Substitution;

/// <summary>skip-plan calibration and eval --skip-plan on a tiny Mixtral (top-2) saved with the Mixtral tokenizer.</summary>
public sealed class SkipPlanTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), $"moe-skip-test-{Guid.NewGuid():N}");

    private const string Text =
        "The quick brown fox jumps over the lazy dog. A mixture of experts routes each token to a few experts, " +
        "so only part of the network runs for any one token. Skipping the second expert when its weight is small saves work.";

    public void Dispose()
    {
        if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
    }

    private (string Model, string Text) Save()
    {
        using var model = TinyEvalModel.Create(32000);
        var dir = Path.Combine(_root, "model");
        model.Save(dir);
        foreach (var file in new[] { "tokenizer.json", "tokenizer_config.json" })
            File.Copy(Path.Combine(TokenizerTestData.Mixtral, file), Path.Combine(dir, file));
        var text = Path.Combine(_root, "text.txt");
        File.WriteAllText(text, Text);
        return (dir, text);
    }

    private string WritePlan(string model, double mu)
    {
        var plan = new SkipPlan
        {
            Model = model, Quantile = 0.5, ProtectFraction = 0,
            Layers = Enumerable.Range(0, TinyEvalModel.Layers).Select(l => new SkipPlanLayer(l, mu, double.PositiveInfinity, 0)).ToList(),
        };
        var path = Path.Combine(_root, $"plan-{mu}.json");
        File.WriteAllText(path, plan.ToJson());
        return path;
    }

    [Fact]
    public void MuZeroChangesNothingAndAlwaysSkippingHalvesTheExpertCalls()
    {
        var (model, text) = Save();
        var none = Evaluator.Run(new EvaluateOptions { Model = model, Base = model, Data = text, SkipPlan = WritePlan(model, 0) });
        Assert.Equal(0.0, none.Metrics.MeanKl);
        Assert.Equal(none.Metrics.BaseMeanNll, none.Metrics.MeanNll);
        Assert.All(none.Skipping, l => Assert.Equal(0, l.SkippedCalls));
        Assert.All(none.Skipping, l => Assert.True(l.ExpertCalls > 0));

        var all = Evaluator.Run(new EvaluateOptions { Model = model, Base = model, Data = text, SkipPlan = WritePlan(model, 2) });
        Assert.True(all.Metrics.MeanKl > 0);
        Assert.All(all.Skipping, l => Assert.Equal(0.5, l.SkippedFraction));
        Assert.Contains("Dynamic expert skipping", all.ToMarkdown());
        var json = JsonNode.Parse(all.ToJson())!;
        Assert.Equal(0.5, (double)json["skipping"]!["layers"]![0]!["skipped_fraction"]!);
    }

    [Fact]
    public void CalibratedPlanSkipsAboutHalfOfTheSecondExpertsAndEvalAppliesIt()
    {
        var (model, text) = Save();
        var planPath = Path.Combine(_root, "plan.json");
        var r = CliRunner.Run("skip-plan", model, planPath, "--data", text, "--samples", "0", "--seq-len", "16");
        Assert.True(r.ExitCode == 0, r.Stderr);
        var plan = SkipPlan.Load(planPath);
        Assert.Equal(TinyEvalModel.Layers, plan.Layers.Count);
        // μ is the median of w₂/w₁: about half of the tokens drop their second expert (a quarter of all calls), fewer when protected.
        Assert.All(plan.Layers, l => Assert.InRange(l.CalibrationSkippedFraction, 0.15, 0.26));
        Assert.All(plan.Layers, l => Assert.InRange(l.Mu, 0.0, 1.0));

        var e = CliRunner.Run("eval", model, "--base", model, "--data", text, "--skip-plan", planPath, "--json");
        Assert.True(e.ExitCode == 0, e.Stderr);
        var layers = JsonNode.Parse(e.Stdout)!["skipping"]!["layers"]!.AsArray();
        Assert.Equal(TinyEvalModel.Layers, layers.Count);
        Assert.All(layers, l => Assert.InRange((double)l!["skipped_fraction"]!, 0.05, 0.45));
    }

    [Fact]
    public void BadPlansAreUsageErrors()
    {
        var (model, text) = Save();
        var missing = Assert.Throws<MoeCompressException>(() => Evaluator.Run(new EvaluateOptions { Model = model, Data = text, SkipPlan = Path.Combine(_root, "none.json") }));
        Assert.Equal(ErrorKind.Usage, missing.Kind);
        var garbage = Path.Combine(_root, "garbage.json");
        File.WriteAllText(garbage, "{\"format\": \"something else\"}");
        Assert.Equal(ErrorKind.Usage, Assert.Throws<MoeCompressException>(() => SkipPlan.Load(garbage)).Kind);
        var outOfRange = new SkipPlan { Model = model, Quantile = 0.5, ProtectFraction = 0, Layers = [new SkipPlanLayer(7, 0.5, 1, 0)] };
        var path = Path.Combine(_root, "layer7.json");
        File.WriteAllText(path, outOfRange.ToJson());
        var e = Assert.Throws<MoeCompressException>(() => Evaluator.Run(new EvaluateOptions { Model = model, Data = text, SkipPlan = path }));
        Assert.Contains("layer 7", e.Message);
    }
}
