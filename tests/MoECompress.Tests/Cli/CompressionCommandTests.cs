using System.Diagnostics;
using System.Text.Json.Nodes;
using MoECompress.Formats.Families;
using MoECompress.Tests.Calibration;
using MoECompress.Tests.Quantization;

namespace MoECompress.Tests.Cli;

/// <summary>prune, merge, quantize, dequantize and profiles compare through the command line on the tiny Mixtral model.</summary>
public sealed class CompressionCommandTests
{
    private static string[] Calibration => ["--data", QuantizeTestData.TokenData, "--samples", "4", "--seq-len", "32"];

    [Fact]
    public void PruneWritesALoadableCheckpointAndItsReport()
    {
        var output = TinyCalibrationModel.NewPath("cli-pruned");
        var r = CliRunner.Run(["prune", TinyCalibrationModel.Mixtral, output, "--keep", "6", "--method", "frequency", .. Calibration]);
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains("Pruning report", r.Stdout);
        using var pruned = ModelCheckpoint.Open(output);
        Assert.Equal(6, pruned.MoE.NumExperts);
        var report = JsonNode.Parse(File.ReadAllText(Path.Combine(output, "compression-report.json")))!;
        Assert.NotNull(report["compression"]);
        Assert.True(File.Exists(Path.Combine(output, "compression-report.md")));
    }

    [Fact]
    public void MergeWritesALoadableCheckpoint()
    {
        var output = TinyCalibrationModel.NewPath("cli-merged");
        var r = CliRunner.Run(["merge", TinyCalibrationModel.Mixtral, output, "--ratio", "0.5", "--method", "average", .. Calibration]);
        Assert.True(r.ExitCode == 0, r.Stderr);
        using var merged = ModelCheckpoint.Open(output);
        Assert.Equal(4, merged.MoE.NumExperts);
    }

    [Fact]
    public void QuantizeToGptqThenDequantizeRoundTrips()
    {
        var output = TinyCalibrationModel.NewPath("cli-quantized");
        var r = CliRunner.Run(["quantize", TinyCalibrationModel.Mixtral, output, "--bits", "3", "--group-size", "32", "--format", "gptq", .. Calibration]);
        Assert.True(r.ExitCode == 0, r.Stderr);
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(output, "config.json")))!;
        Assert.Equal("gptq", (string?)config["quantization_config"]?["quant_method"]);

        var plain = TinyCalibrationModel.NewPath("cli-dequantized");
        var d = CliRunner.Run("dequantize", output, plain);
        Assert.True(d.ExitCode == 0, d.Stderr);
        using var packed = ModelCheckpoint.Open(output);
        using var back = ModelCheckpoint.Open(plain);
        Assert.Null(back.Config["quantization_config"]);
        using var a = packed.LoadExpert(1, 2, ExpertProjection.Down);
        using var b = back.LoadExpert(1, 2, ExpertProjection.Down);
        Assert.True(a.allclose(b, rtol: 1e-2, atol: 1e-3));
    }

    [Fact]
    public void ProfilesCompareReportsOverlapPerLayer()
    {
        var p1 = TinyCalibrationModel.NewPath("cli-profile-a");
        var p2 = TinyCalibrationModel.NewPath("cli-profile-b");
        Assert.Equal(0, CliRunner.Run(["calibrate", TinyCalibrationModel.Mixtral, "--out", p1, .. Calibration]).ExitCode);
        Assert.Equal(0, CliRunner.Run(["calibrate", TinyCalibrationModel.Mixtral, "--out", p2, "--data", QuantizeTestData.TokenData, "--samples", "4", "--seq-len", "32", "--seed", "5"]).ExitCode);
        var r = CliRunner.Run("profiles", "compare", $"a={p1}", $"b={p2}", "--keep", "4", "--method", "frequency", "--json");
        Assert.True(r.ExitCode == 0, r.Stderr);
        var json = JsonNode.Parse(r.Stdout)!;
        Assert.Equal(4, json["layers"]!.AsArray().Count);
    }

    [Fact]
    public void InfeasibleTopKFailsFastWithExitCode6AndNoOutput()
    {
        var output = TinyCalibrationModel.NewPath("cli-infeasible");
        var clock = Stopwatch.StartNew();
        var r = CliRunner.Run(["prune", TinyCalibrationModel.Mixtral, output, "--keep", "1", .. Calibration]);
        clock.Stop();
        Assert.Equal(6, r.ExitCode);
        Assert.Contains("top", r.StderrLines.Single(), StringComparison.OrdinalIgnoreCase);
        Assert.False(Directory.Exists(output));
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"took {clock.Elapsed}");
    }

    [Theory]
    [InlineData("prune", "--ratio", "0.25", "--keep", "6")]
    [InlineData("prune", "--ratio", "1.5")]
    [InlineData("merge", "--keep", "4", "--rank", "0")]
    [InlineData("quantize", "--bits", "2.5", "--size", "1MB")]
    [InlineData("quantize", "--bits", "3", "--format", "awq")]
    public void BadOptionsAreUsageErrorsNamingTheOption(string command, params string[] options)
    {
        var output = TinyCalibrationModel.NewPath("cli-bad");
        var r = CliRunner.Run([command, TinyCalibrationModel.Mixtral, output, .. options]);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("--", r.StderrLines.Single());
        Assert.False(Directory.Exists(output));
    }
}
