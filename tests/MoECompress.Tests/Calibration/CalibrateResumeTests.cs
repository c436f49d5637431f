using System.Text.RegularExpressions;
using MoECompress.Compression.Calibration;
using MoECompress.Formats.Errors;
using MoECompress.Tests.Quantization;

namespace MoECompress.Tests.Calibration;

/// <summary>
/// <c>calibrate --resume</c>: a calibration stopped after a layer leaves its journal beside the profile folder; without
/// --resume the leftover is named, with it the run continues at the next layer and writes the same statistics, byte for
/// byte; other options are refused.
/// </summary>
public sealed partial class CalibrateResumeTests
{
    private static CalibrateOptions Options(string name) => new()
    {
        Model = TinyCalibrationModel.Mixtral, Data = QuantizeTestData.TokenData, Samples = 8, SeqLen = 24, MicroBatch = 64,
        Out = TinyCalibrationModel.NewPath(name),
    };

    private static byte[] Statistics(string dir) => File.ReadAllBytes(Path.Combine(dir, "profile.safetensors"));

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    public void A_calibration_stopped_after_a_layer_resumes_to_the_same_statistics(int stopAfterLayer)
    {
        var reference = Statistics(Calibrator.Run(Options("calres-ref")).Directory);
        var options = Options("calres");
        using var cts = new CancellationTokenSource();
        Assert.ThrowsAny<OperationCanceledException>(() => Calibrator.Run(options, new StopAfterLayer(stopAfterLayer, cts), cts.Token));
        Assert.False(Directory.Exists(options.Out));
        var journal = Path.Combine(Path.GetDirectoryName(options.Out)!, $".{Path.GetFileName(options.Out)}.calibrate-journal");
        Assert.True(File.Exists(Path.Combine(journal, "journal.json")));

        var refused = Assert.Throws<MoeCompressException>(() => Calibrator.Run(options));
        Assert.Equal(ErrorKind.Io, refused.Kind);
        Assert.Contains(journal, refused.Message);
        var other = Assert.Throws<MoeCompressException>(() => Calibrator.Run(options with { Samples = 4, Resume = true }));
        Assert.Contains("other options", other.Message);

        var lines = new List<string>();
        var resumed = Calibrator.Run(options with { Resume = true }, new Collect(lines));
        Assert.Contains(lines, l => l.StartsWith($"resuming the interrupted calibration at layer {stopAfterLayer}", StringComparison.Ordinal));
        Assert.DoesNotContain(lines, l => l.StartsWith("layer 1/", StringComparison.Ordinal)); // layer 0 is not run again
        Assert.False(Directory.Exists(journal));
        Assert.Equal(reference, Statistics(resumed.Directory));
    }

    [GeneratedRegex(@"^layer (\d+)/\d+: (\d+)/(\d+) sequences")]
    private static partial Regex LayerLine();

    /// <summary>Cancels once the last batch of decoder layer <paramref name="layer"/> (0-based) has run.</summary>
    private sealed class StopAfterLayer(int layer, CancellationTokenSource cts) : IProgress<string>
    {
        public void Report(string value)
        {
            var m = LayerLine().Match(value);
            if (m.Success && int.Parse(m.Groups[1].Value) == layer && m.Groups[2].Value == m.Groups[3].Value) cts.Cancel();
        }
    }

    private sealed class Collect(List<string> lines) : IProgress<string>
    {
        public void Report(string value) => lines.Add(value);
    }
}
