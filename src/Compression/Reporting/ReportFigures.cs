using ScottPlot;

namespace MoECompress.Compression.Reporting;

/// <summary>
/// The report's figures, drawn with ScottPlot as PNG bytes: layer × expert grids (every cell coloured and labelled,
/// layer 0 on top) and grouped bar charts.
/// </summary>
public static class ReportFigures
{
    /// <summary>One labelled, coloured cell of a layer × expert grid.</summary>
    public readonly record struct Cell(string Label, Color Fill);

    /// <summary>Colour of a kept expert.</summary>
    public static readonly Color Kept = Color.FromHex("#4c9f70");
    /// <summary>Colour of a removed expert.</summary>
    public static readonly Color Removed = Color.FromHex("#d9534f");
    /// <summary>Colour of a protected (super) expert.</summary>
    public static readonly Color Protected = Color.FromHex("#f0ad4e");

    private static readonly Color[] Palette =
    [
        Color.FromHex("#1f77b4"), Color.FromHex("#ff7f0e"), Color.FromHex("#2ca02c"), Color.FromHex("#d62728"),
        Color.FromHex("#9467bd"), Color.FromHex("#8c564b"), Color.FromHex("#e377c2"), Color.FromHex("#7f7f7f"),
        Color.FromHex("#bcbd22"), Color.FromHex("#17becf"),
    ];

    /// <summary>The i-th colour of a categorical palette (cycling).</summary>
    public static Color Category(int i) => Palette[((i % Palette.Length) + Palette.Length) % Palette.Length];

    /// <summary>A viridis colour for <paramref name="value"/> between <paramref name="min"/> and <paramref name="max"/>.</summary>
    public static Color Scale(double value, double min, double max)
    {
        double f = max > min ? Math.Clamp((value - min) / (max - min), 0, 1) : 0.5;
        return new ScottPlot.Colormaps.Viridis().GetColor(f);
    }

    /// <summary>A numeric layer × expert grid: cell (l, e) coloured by <paramref name="color"/> and labelled by <paramref name="label"/>.</summary>
    public static byte[] Grid(string title, IReadOnlyList<int> layers, IReadOnlyList<double[]> values, Func<double, string> label,
        Func<double, Color> color, string expertAxis = "expert (original index)") =>
        Cells(title, layers, values.Select(row => row.Select(v => new Cell(label(v), color(v))).ToArray()).ToArray(), expertAxis);

    /// <summary>A layer × expert grid of given cells (rows may differ in length).</summary>
    public static byte[] Cells(string title, IReadOnlyList<int> layers, IReadOnlyList<Cell[]> rows, string expertAxis = "expert (original index)")
    {
        var plot = new Plot();
        int experts = rows.Count == 0 ? 0 : rows.Max(r => r.Length);
        for (var l = 0; l < rows.Count; l++)
            for (var e = 0; e < rows[l].Length; e++)
            {
                var cell = rows[l][e];
                var rect = plot.Add.Rectangle(e, e + 1, -l - 1, -l);
                rect.FillStyle.Color = cell.Fill;
                rect.LineStyle.Color = Colors.White;
                rect.LineStyle.Width = 2;
                var text = plot.Add.Text(cell.Label, e + 0.5, -l - 0.5);
                text.LabelFontSize = 13;
                text.LabelAlignment = Alignment.MiddleCenter;
                text.LabelFontColor = Luminance(cell.Fill) > 0.55 ? Colors.Black : Colors.White;
            }
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(
            Enumerable.Range(0, experts).Select(e => e + 0.5).ToArray(), Enumerable.Range(0, experts).Select(e => e.ToString()).ToArray());
        plot.Axes.Left.TickGenerator = new ScottPlot.TickGenerators.NumericManual(
            Enumerable.Range(0, rows.Count).Select(l => -l - 0.5).ToArray(), layers.Select(l => l.ToString()).ToArray());
        plot.Axes.SetLimits(0, Math.Max(1, experts), -Math.Max(1, rows.Count), 0);
        plot.Grid.IsVisible = false;
        plot.Title(title);
        plot.XLabel(expertAxis);
        plot.YLabel("layer");
        return plot.GetImageBytes(Math.Clamp(110 + 56 * experts, 420, 1600), Math.Clamp(110 + 44 * rows.Count, 220, 1400), ImageFormat.Png);
    }

    /// <summary>Line chart of one or more (x, y) series sharing both axes (e.g. a training loss curve).</summary>
    public static byte[] Lines(string title, IReadOnlyList<(string Name, double[] X, double[] Y)> series, string xLabel, string yLabel)
    {
        var plot = new Plot();
        for (var s = 0; s < series.Count; s++)
        {
            var line = plot.Add.ScatterLine(series[s].X, series[s].Y);
            line.Color = Category(s);
            line.LineWidth = 2;
            line.LegendText = series[s].Name;
        }
        if (series.Count > 1) plot.ShowLegend(Alignment.UpperRight);
        plot.Title(title);
        plot.XLabel(xLabel);
        plot.YLabel(yLabel);
        return plot.GetImageBytes(900, 420, ImageFormat.Png);
    }

    /// <summary>Grouped bars: one group per category, one bar per series; <paramref name="log"/> draws log10 of the values.</summary>
    public static byte[] GroupedBars(string title, IReadOnlyList<string> categories, IReadOnlyList<(string Name, double[] Values)> series,
        string valueLabel, bool log = false)
    {
        var plot = new Plot();
        int n = Math.Max(1, series.Count);
        double width = 0.8 / n;
        var bars = new List<Bar>();
        for (var s = 0; s < series.Count; s++)
        {
            for (var c = 0; c < categories.Count && c < series[s].Values.Length; c++)
            {
                double v = series[s].Values[c];
                bars.Add(new Bar
                {
                    Position = c - 0.4 + width * (s + 0.5),
                    Value = log ? Math.Log10(Math.Max(v, 1e-12)) : v,
                    Size = width * 0.95,
                    FillColor = Category(s),
                    Label = v.ToString(v >= 100 ? "0" : v >= 1 ? "0.0#" : "0.####", System.Globalization.CultureInfo.InvariantCulture),
                });
            }
            plot.Legend.ManualItems.Add(new LegendItem { LabelText = series[s].Name, FillColor = Category(s) });
        }
        var barPlot = plot.Add.Bars(bars);
        barPlot.ValueLabelStyle.FontSize = 11;
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(
            Enumerable.Range(0, categories.Count).Select(c => (double)c).ToArray(), categories.ToArray());
        if (log)
        {
            var ticks = new ScottPlot.TickGenerators.NumericAutomatic { LabelFormatter = y => Math.Pow(10, y).ToString("G3", System.Globalization.CultureInfo.InvariantCulture) };
            plot.Axes.Left.TickGenerator = ticks;
        }
        plot.Axes.Margins(bottom: 0, top: 0.2);
        plot.ShowLegend(Alignment.UpperRight);
        plot.Title(title);
        plot.YLabel(log ? valueLabel + " (log scale)" : valueLabel);
        return plot.GetImageBytes(Math.Clamp(160 + 120 * categories.Count * n / 2, 520, 1400), 380, ImageFormat.Png);
    }

    private static double Luminance(Color c) => (0.299 * c.R + 0.587 * c.G + 0.114 * c.B) / 255;
}
