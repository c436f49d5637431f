using System.Text.RegularExpressions;
using MoECompress.Compression;
using MoECompress.Compression.Reporting;
using MoECompress.Tests.Calibration;
using MoECompress.Tests.Cli;
using MoECompress.Tests.Quantization;
using SkiaSharp;

namespace MoECompress.Tests.Reporting;

/// <summary>report.html: self-contained, its figures are real PNGs, and the grids colour the cells they are asked to.</summary>
public class HtmlReportTests
{
    private static string[] Calibration => ["--data", QuantizeTestData.TokenData, "--samples", "4", "--seq-len", "32"];

    private static List<SKBitmap> EmbeddedImages(string html)
    {
        Assert.DoesNotContain("<script", html, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotMatch(new Regex("(src|href)=\"(https?:|//|file:)"), html);
        var images = Regex.Matches(html, "src=\"data:image/png;base64,([A-Za-z0-9+/=]+)\"")
            .Select(m => SKBitmap.Decode(Convert.FromBase64String(m.Groups[1].Value))).ToList();
        Assert.All(images, b => Assert.True(b is { Width: > 200, Height: > 150 }));
        return images;
    }

    [Fact]
    public void PruneWithAProfileAndEvalWritesAReportWithUsageMapAndLayerErrors()
    {
        // The bundled demo model: its tokenizer reads the bundled held-out text that --eval needs.
        var model = BundledData.LocateDemoModel()!;
        var profile = TinyCalibrationModel.NewPath("html-profile");
        var c = CliRunner.Run("calibrate", model, "--out", profile, "--samples", "2", "--seq-len", "32");
        Assert.True(c.ExitCode == 0, c.Stderr);
        var output = TinyCalibrationModel.NewPath("html-pruned");
        var r = CliRunner.Run("prune", model, output, "--keep", "6", "--method", "frequency", "--profile", profile, "--eval", "--eval-tokens", "128");
        Assert.True(r.ExitCode == 0, r.Stderr);
        var html = File.ReadAllText(Path.Combine(output, HtmlReport.FileName));
        Assert.True(File.Exists(Path.Combine(output, "compression-report.json")));
        foreach (var heading in new[] { "Kept and removed experts", "Hidden-state error per layer", "Expert usage of the input (calibration profile)" })
            Assert.Contains($"<h2>{heading}</h2>", html);
        Assert.Equal(3, EmbeddedImages(html).Count);
    }

    [Fact]
    public void QuantizeReportShowsTheBitAllocation()
    {
        var reportDir = TinyCalibrationModel.NewPath("html-quant-report");
        var r = CliRunner.Run(["quantize", TinyCalibrationModel.Mixtral, "--dry-run", "--bits", "3", "--group-size", "32", "--report-dir", reportDir, .. Calibration]);
        Assert.True(r.ExitCode == 0, r.Stderr);
        var html = File.ReadAllText(Path.Combine(reportDir, HtmlReport.FileName));
        Assert.Contains("<h2>Bit allocation</h2>", html);
        Assert.Matches(@"\d+ × [234] bits", html);
        Assert.Single(EmbeddedImages(html));
    }

    [Fact]
    public void GridCellsAreDrawnInTheirColours()
    {
        // 2 layers × 4 experts, one removed (red) cell: about 1/8 of the coloured area is red, 7/8 green.
        var cells = new[]
        {
            new ReportFigures.Cell[] { new("×", ReportFigures.Removed), new("→0", ReportFigures.Kept), new("→1", ReportFigures.Kept), new("→2", ReportFigures.Kept) },
            new ReportFigures.Cell[] { new("→0", ReportFigures.Kept), new("→1", ReportFigures.Kept), new("→2", ReportFigures.Kept), new("→3", ReportFigures.Kept) },
        };
        using var bitmap = SKBitmap.Decode(ReportFigures.Cells("test", [0, 1], cells));
        long red = 0, green = 0;
        for (var y = 0; y < bitmap.Height; y++)
            for (var x = 0; x < bitmap.Width; x++)
            {
                var p = bitmap.GetPixel(x, y);
                if (Near(p, ReportFigures.Removed)) red++;
                else if (Near(p, ReportFigures.Kept)) green++;
            }
        Assert.True(red > 500, $"red {red}");
        Assert.InRange(green / (double)red, 7 * 0.8, 7 * 1.25);
        // The removed cell is the top-left one (layer 0 on top, expert 0 on the left).
        Assert.True(Near(FirstColouredPixelFromTopLeft(bitmap), ReportFigures.Removed));
    }

    private static bool Near(SKColor p, ScottPlot.Color c) =>
        Math.Abs(p.Red - c.R) <= 6 && Math.Abs(p.Green - c.G) <= 6 && Math.Abs(p.Blue - c.B) <= 6;

    private static SKColor FirstColouredPixelFromTopLeft(SKBitmap b)
    {
        for (var d = 0; d < Math.Min(b.Width, b.Height); d++)
        {
            var p = b.GetPixel(d, d);
            if (Near(p, ReportFigures.Removed) || Near(p, ReportFigures.Kept)) return p;
        }
        return SKColors.Transparent;
    }
}
