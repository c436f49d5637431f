using System.Text.Json.Nodes;
using MoECompress.Tests.Calibration;
using MoECompress.Tests.Quantization;

namespace MoECompress.Tests.Cli;

/// <summary>--version, and --json on the commands that report a result (stdout is exactly one JSON document).</summary>
public class JsonOutputTests
{
    [Fact]
    public void VersionPrintsTheToolVersion()
    {
        var r = CliRunner.Run("--version");
        Assert.Equal(0, r.ExitCode);
        Assert.StartsWith("moe-compress " + typeof(MoECompress.Cli.CliApp).Assembly.GetName().Version!.ToString(3), r.Stdout.Trim());
    }

    [Fact]
    public void SynthesizeReshardAndCalibratePrintJson()
    {
        var synthetic = TinyCalibrationModel.NewPath("json-synth");
        var s = CliRunner.Run("synthesize", "mixtral", synthetic, "--json");
        Assert.True(s.ExitCode == 0, s.Stderr);
        var sj = JsonNode.Parse(s.Stdout)!;
        Assert.Equal("mixtral", (string?)sj["preset"]);
        Assert.True((long)sj["bytes"]! > 0);

        var copy = TinyCalibrationModel.NewPath("json-reshard");
        var r = CliRunner.Run("reshard", synthetic, copy, "--json");
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Equal((int)sj["tensors"]!, (int)JsonNode.Parse(r.Stdout)!["tensors"]!);

        var profile = TinyCalibrationModel.NewPath("json-profile");
        var c = CliRunner.Run("calibrate", TinyCalibrationModel.Mixtral, "--out", profile, "--data", QuantizeTestData.TokenData, "--samples", "2", "--seq-len", "16", "--json");
        Assert.True(c.ExitCode == 0, c.Stderr);
        var cj = JsonNode.Parse(c.Stdout)!;
        Assert.Equal(2 * 16, (long)cj["tokens"]!);
        Assert.True((int)cj["moe_layers"]! > 0);
    }
}
