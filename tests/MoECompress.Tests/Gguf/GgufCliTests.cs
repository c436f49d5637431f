using MoECompress.Tests.Calibration;
using MoECompress.Tests.Cli;
using MoECompress.Tests.Quantization;

namespace MoECompress.Tests.Gguf;

/// <summary><c>quantize --format gguf</c> and <c>inspect</c> of a .gguf through the CLI; bad options exit 2 with one line.</summary>
public sealed class GgufCliTests
{
    [Fact]
    public void QuantizeWritesOneGgufThatInspectReads()
    {
        var output = TinyCalibrationModel.NewPath("cli") + ".gguf";
        var r = CliRunner.Run("quantize", GgufTestModels.Mixtral, output, "--format", "gguf", "--uniform", "Q8_0",
            "--tensor-type", "attn_v=F16", "--data", QuantizeTestData.TokenData, "--samples", "4", "--seq-len", "16", "--json");
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.True(File.Exists(output));
        Assert.Contains("\"format\": \"gguf\"", r.Stdout);
        Assert.Contains("\"name\": \"blk.0.attn_v.weight\",\n", r.Stdout.Replace("\r\n", "\n"));
        using (var gguf = Formats.Gguf.GgufFile.Open(output))
        {
            Assert.Equal(Formats.Gguf.GgmlType.F16, gguf.GetTensor("blk.0.attn_v.weight").Type);
            Assert.Equal(Formats.Gguf.GgmlType.Q8_0, gguf.GetTensor("blk.0.attn_k.weight").Type);
            Assert.Equal("llama", gguf.Get("tokenizer.ggml.model")!.Value);
        }

        var inspect = CliRunner.Run("inspect", output);
        Assert.True(inspect.ExitCode == 0, inspect.Stderr);
        Assert.Contains("gguf Q8_0", inspect.Stdout);
        Assert.Contains("mixtral", inspect.Stdout);

        var again = CliRunner.Run("quantize", GgufTestModels.Mixtral, output, "--format", "gguf", "--uniform", "F16");
        Assert.Equal(7, again.ExitCode);
        Assert.Contains("already exists", again.Stderr);
    }

    [Theory]
    [InlineData("--uniform", "Q9_K")]
    [InlineData("--tensor-type", "attn_v")]
    public void BadGgufOptionsAreUsageErrors(string option, string value)
    {
        string[] args = ["quantize", GgufTestModels.Mixtral, TinyCalibrationModel.NewPath("bad") + ".gguf", "--format", "gguf", option, value];
        var r = CliRunner.Run(option == "--uniform" ? args : [.. args, "--uniform", "F16"]);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains(option, r.Stderr);
    }
}
