using MoECompress.Tests.Infrastructure;
using MoECompress.Compression.Calibration;
using MoECompress.Compression.Model;
using MoECompress.Formats.Families;

namespace MoECompress.Tests.Calibration;

/// <summary>
/// Every statistic of <see cref="CalibrationCollector"/> and the per-layer Hessians of <see cref="LayerHessianCollector"/>
/// against <see cref="BruteForceCalibration"/>, on tiny Mixtral-like and DeepSeek-V3-like checkpoints streamed through the
/// engine in several micro-batches.
/// </summary>
public sealed class CalibrationCollectorTests
{
    private sealed record Run(CalibrationProfile Profile, RouterLogitDump? Logits, MoEInputCapture Capture, IReadOnlyList<int[]> Sequences,
        IReadOnlyDictionary<int, IReadOnlyDictionary<int, ExpertHessians>> Hessians);

    private static Run Calibrate(string modelDir, IReadOnlyList<int[]> sequences, int microBatchTokens, CalibrationCollectorOptions options)
    {
        using var checkpoint = ModelCheckpoint.Open(modelDir);
        var engine = new ModelEngine(checkpoint.Tensors, checkpoint.Family, checkpoint.MoE, checkpoint.Config, checkpoint.ConfigPath);
        using var collector = new CalibrationCollector(options);
        var capture = new MoEInputCapture();
        var hessians = checkpoint.MoE.MoELayerIndices()
            .Select(l => new LayerHessianCollector(l, Enumerable.Range(0, checkpoint.MoE.NumExperts), Enum.GetValues<HessianKind>())).ToList();
        engine.CreateRunner(new StreamingOptions { MicroBatchTokens = microBatchTokens })
            .Run(sequences, null, new LayerObserverFan([collector, capture, .. hessians]));
        var profile = collector.Build(CalibrationModelInfo.From(checkpoint.MoE, modelDir));
        return new Run(profile, collector.BuildRouterLogits(sequences), capture, sequences,
            hessians.ToDictionary(h => h.Layer, h => h.Build()));
    }

    private static BruteForceCalibration Expected(string modelDir, Run run, int layer, BruteForceRouting rule)
    {
        using var checkpoint = ModelCheckpoint.Open(modelDir);
        var expected = BruteForceCalibration.Compute(run.Capture.Tokens(layer), checkpoint.Tensors, checkpoint.Family, checkpoint.MoE, layer, rule);
        Assert.True(expected.SmallestSelectionGap > 1e-5,
            $"layer {layer}: the fixture has a near tie in top-k selection ({expected.SmallestSelectionGap:E2}); pick other tokens");
        return expected;
    }

    [Fact]
    public void MixtralStatisticsEqualBruteForceLoops()
    {
        var sequences = TinyCalibrationModel.RandomSequences(6, 10, 256, seed: 11);
        var run = Calibrate(TinyCalibrationModel.Mixtral, sequences, microBatchTokens: 20,
            new CalibrationCollectorOptions { MeanOutputOverAllTokens = true, KeepRouterLogits = true, ColdThreshold = 12 });
        var profile = run.Profile;

        Assert.Equal(new[] { 0, 1, 2, 3 }, profile.Layers.Select(l => l.Layer));
        Assert.Equal(60, profile.Tokens);
        var expectedCold = new List<(int, int)>();
        var maxima = new Dictionary<int, IReadOnlyList<double>>();
        foreach (var stats in profile.Layers)
        {
            var expected = Expected(TinyCalibrationModel.Mixtral, run, stats.Layer, BruteForceRouting.Mixtral);
            AssertLayerMatches(expected, stats, run.Hessians[stats.Layer], run.Logits!, allTokens: true);
            Tolerance.Close(60.0, stats.GateWeightMass.Sum(), Tolerance.Float32Sum); // renormalised top-k gates (float32) sum to 1 per token
            for (var i = 0; i < expected.E; i++)
                if (expected.Count[i] < 12) expectedCold.Add((stats.Layer, i));
            maxima[stats.Layer] = expected.MaxAbs;
        }

        Assert.NotEmpty(expectedCold);
        Assert.Equal(expectedCold, profile.Coverage.ColdExperts.Select(c => (c.Layer, c.Expert)));
        Assert.Equal(12.0, profile.Coverage.ColdThreshold);

        // The boosted expert in layer 0 is the only super expert, and the rule agrees with a hand evaluation.
        var super = Assert.Single(profile.SuperExperts.Experts);
        Assert.Equal((TinyCalibrationModel.MixtralBoostedLayer, TinyCalibrationModel.MixtralBoostedExpert), (super.Layer, super.Expert));
        var sorted = maxima.Values.SelectMany(v => v).Order().ToArray();
        var pos = 0.995 * (sorted.Length - 1);
        var p995 = sorted[(int)pos] + (sorted[(int)pos + 1] - sorted[(int)pos]) * (pos - (int)pos);
        Tolerance.Close(p995, profile.SuperExperts.Percentile995, Tolerance.Float32);
        Assert.True(super.MaxAbsOutput > p995 && super.MaxAbsOutput > sorted[^1] / 10);
    }

    [Fact]
    public void DeepSeekV3StatisticsEqualBruteForceLoops()
    {
        var lengths = new[] { 10, 10, 7, 10, 7, 12 };
        var rng = new Random(5);
        var sequences = lengths.Select(n => Enumerable.Range(0, n).Select(_ => rng.Next(256)).ToArray()).ToArray();
        var run = Calibrate(TinyCalibrationModel.DeepSeekV3, sequences, microBatchTokens: 24,
            new CalibrationCollectorOptions { KeepRouterLogits = true });
        var profile = run.Profile;
        using var checkpoint = ModelCheckpoint.Open(TinyCalibrationModel.DeepSeekV3);
        var moe = checkpoint.MoE;
        Assert.Equal(new[] { 1, 2, 3 }, profile.Layers.Select(l => l.Layer)); // layer 0 is dense
        Assert.Equal(lengths.Sum(), profile.Tokens);
        var rule = BruteForceRouting.DeepSeekV3(checkpoint.Config["routed_scaling_factor"]!.GetValue<double>(), moe.NumGroups, moe.TopKGroups);
        Assert.True(moe.NumGroups > 1);

        foreach (var stats in profile.Layers)
        {
            var expected = Expected(TinyCalibrationModel.DeepSeekV3, run, stats.Layer, rule);
            AssertLayerMatches(expected, stats, run.Hessians[stats.Layer], run.Logits!, allTokens: false);
            Assert.Null(stats.MeanOutputAllTokens);
            Assert.Equal(0, stats.SelectionCount[TinyCalibrationModel.DeepSeekColdExpert]);
            var cold = run.Hessians[stats.Layer][TinyCalibrationModel.DeepSeekColdExpert];
            Assert.Equal(0, cold.Tokens);
            Assert.Equal(0f, cold.Matrix(HessianKind.Input).abs().max().item<float>());
        }

        // The never-selected expert is cold in every MoE layer under the default threshold max(16, 0.1·N·k/E).
        Assert.Equal(16.0, profile.Coverage.ColdThreshold);
        foreach (var layer in new[] { 1, 2, 3 })
            Assert.Contains(profile.Coverage.ColdExperts, c => c.Layer == layer && c.Expert == TinyCalibrationModel.DeepSeekColdExpert && c.RoutedTokens == 0);
        Assert.True(profile.Coverage.UnusedExperts >= 3);

        // The largest output belongs to the boosted expert of layer 3, in the last quarter of the 4 layers: no super expert.
        var top = profile.Layers.SelectMany(l => l.MaxAbsOutput.Select((m, e) => (l.Layer, e, m))).MaxBy(t => t.m);
        Assert.Equal((TinyCalibrationModel.DeepSeekBoostedLayer, TinyCalibrationModel.DeepSeekBoostedExpert), (top.Layer, top.e));
        Assert.Equal(3.0, profile.SuperExperts.LayerLimit);
        Assert.Empty(profile.SuperExperts.Experts);

        // Router logits rows follow sequence order whatever the micro-batching (sequences of length 7 ran together).
        Assert.Equal(lengths, run.Logits!.SequenceLengths);
        Assert.Equal(sequences, run.Logits.TokenIds);
    }

    [Fact]
    public void ResidentRunsOneSequenceAtATimeGiveTheSameProfileAsStreaming()
    {
        var sequences = TinyCalibrationModel.RandomSequences(3, 9, 256, seed: 23);
        var options = new CalibrationCollectorOptions { KeepRouterLogits = true };
        var streamed = Calibrate(TinyCalibrationModel.Mixtral, sequences, microBatchTokens: 64, options);

        using var checkpoint = ModelCheckpoint.Open(TinyCalibrationModel.Mixtral);
        var engine = new ModelEngine(checkpoint.Tensors, checkpoint.Family, checkpoint.MoE, checkpoint.Config, checkpoint.ConfigPath);
        using var model = engine.LoadResident();
        using var collector = new CalibrationCollector(options);
        for (var s = 0; s < sequences.Length; s++)
            model.HiddenStates(sequences[s], collector, s).Dispose();
        var resident = collector.Build(CalibrationModelInfo.From(checkpoint.MoE));
        var logits = collector.BuildRouterLogits()!;

        foreach (var (a, b) in streamed.Profile.Layers.Zip(resident.Layers))
        {
            Assert.Equal(a.SelectionCount, b.SelectionCount);
            Assert.Equal(a.Coselection, b.Coselection);
            CloseAll(a.Reap, b.Reap, $"layer {a.Layer} reap");
            CloseAll(a.Tcess, b.Tcess, $"layer {a.Layer} tcess");
            CloseAll(streamed.Logits!.Layers[a.Layer].Select(v => (double)v).ToArray(), logits.Layers[a.Layer].Select(v => (double)v).ToArray(), "router logits");
        }
    }

    private static void AssertLayerMatches(BruteForceCalibration x, MoELayerStatistics s, IReadOnlyDictionary<int, ExpertHessians> hessians,
        RouterLogitDump logits, bool allTokens)
    {
        var where = $"layer {s.Layer}";
        Assert.Equal(x.N, s.Tokens);
        Assert.Equal(x.Count, s.SelectionCount);
        Assert.Equal(x.Count, s.RoutedTokens);
        Assert.Equal(x.N * x.K, s.SelectionCount.Sum());
        for (var i = 0; i < x.E; i++)
        {
            Assert.Equal((double)x.Count[i] / x.N, s.Frequency(i), 12);
            for (var j = 0; j < x.E; j++)
            {
                Assert.Equal(x.Cosel[i, j], s.CoselectionCount(i, j));
                Assert.Equal(s.CoselectionCount(i, j), s.CoselectionCount(j, i));
            }
            Assert.Equal(s.SelectionCount[i], s.CoselectionCount(i, i));
        }

        CloseAll(x.ScoreMass, s.RoutingWeightMass, where + " routing_weight_mass");
        CloseAll(x.GateMass, s.GateWeightMass, where + " gate_weight_mass");
        CloseAll(x.LogitSum.Select(v => v / x.N).ToArray(), s.Tcess, where + " tcess");
        CloseAll(x.ReapSum.Select((v, i) => x.Count[i] == 0 ? 0 : v / x.Count[i]).ToArray(), s.Reap, where + " reap");
        CloseAll(x.MaxAbs, s.MaxAbsOutput, where + " max_abs_output");
        CloseAll(Flatten(x.OutputSum, (i, v) => x.Count[i] == 0 ? 0 : v / x.Count[i]), s.MeanOutput.Select(v => (double)v).ToArray(), where + " mean_output");
        if (allTokens)
            CloseAll(Flatten(x.AllTokenOutputSum, (_, v) => v / x.N), s.MeanOutputAllTokens!.Select(v => (double)v).ToArray(), where + " mean_output_all_tokens");

        for (var i = 0; i < x.E; i++)
        {
            var h = hessians[i];
            Assert.Equal(x.Count[i], h.Tokens);
            Assert.True(Math.Abs(x.GateMass[i] - h.GateWeightSum) <= 1e-5 * Math.Max(1, x.GateMass[i]), $"{where} expert {i} gate weight sum");
            CloseAll(Flatten(x.Hin[i]), Values(h, HessianKind.Input), $"{where} expert {i} hessian_in");
            CloseAll(Flatten(x.HinW[i]), Values(h, HessianKind.InputWeighted), $"{where} expert {i} hessian_in_weighted");
            CloseAll(Flatten(x.Hd[i]), Values(h, HessianKind.Down), $"{where} expert {i} hessian_down");
            CloseAll(Flatten(x.HdW[i]), Values(h, HessianKind.DownWeighted), $"{where} expert {i} hessian_down_weighted");
        }

        Assert.Equal(x.E, logits.NumExperts);
        CloseAll(x.Logits.SelectMany(z => z).ToArray(), logits.Layers[s.Layer].Select(v => (double)v).ToArray(), where + " router logits");
    }

    private static double[] Values(ExpertHessians h, HessianKind kind)
    {
        using var m = h.Matrix(kind).to(TorchSharp.torch.ScalarType.Float64).contiguous();
        return m.data<double>().ToArray();
    }

    private static double[] Flatten(double[,] m, Func<int, double, double>? map = null)
    {
        var rows = m.GetLength(0);
        var cols = m.GetLength(1);
        var r = new double[rows * cols];
        for (var i = 0; i < rows; i++)
            for (var j = 0; j < cols; j++) r[i * cols + j] = map is null ? m[i, j] : map(i, m[i, j]);
        return r;
    }

    /// <summary>Every value within 1e-4 of the largest expected magnitude (float32 engine against a float64 loop).</summary>
    private static void CloseAll(double[] expected, double[] actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        var scale = Math.Max(expected.Max(Math.Abs), 1e-12);
        for (var i = 0; i < expected.Length; i++)
            if (!(Math.Abs(expected[i] - actual[i]) <= 1e-4 * scale))
                Assert.Fail($"{what}[{i}]: expected {expected[i]:R}, got {actual[i]:R} (scale {scale:E3})");
    }
}
