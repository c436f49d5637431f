using MoECompress.Compression.Calibration;
using MoECompress.Compression.Data;
using MoECompress.Compression.Model;
using MoECompress.Compression.Quantization;
using MoECompress.Formats.Families;
using MoECompress.Tests.Calibration;
using static TorchSharp.torch;

namespace MoECompress.Tests.Quantization;

/// <summary><see cref="ExpertSensitivity"/>: the per-expert MoE-block output error on the tiny calibration models.</summary>
public sealed class SensitivityTests
{
    private static CalibrationSet Tokens(ModelCheckpoint checkpoint) =>
        CalibrationPass.LoadTokens(checkpoint, QuantizeTestData.TokenData, QuantizeTestData.Profile.DataOptions);

    [Fact]
    public void ErrorIsTinyAtEightBitsAndGrowsAsBitsDrop()
    {
        using var checkpoint = ModelCheckpoint.Open(TinyCalibrationModel.Mixtral);
        var result = ExpertSensitivity.Measure(checkpoint, Tokens(checkpoint), null, new ExpertSensitivityOptions
        {
            Candidates = [2, 3, 4, 8], Recipe = new QuantizeRecipe { Method = QuantizeMethod.Rtn, GroupSize = 32 }, MicroBatch = 64,
        });

        Assert.Equal(new[] { 0, 1, 2, 3 }, result.Layers);
        Assert.Equal(new[] { 2, 3, 4, 8 }, result.Candidates);
        Assert.Empty(result.Fallbacks); // RTN never falls back
        foreach (var l in result.Layers)
        {
            Assert.Equal(8 * 24 * 2, Enumerable.Range(0, 8).Sum(e => result.RoutedTokens(l, e)));
            for (var e = 0; e < 8; e++)
            {
                var eps = result.Errors(l, e);
                if (result.RoutedTokens(l, e) == 0)
                {
                    Assert.All(eps.Values, v => Assert.Equal(0, v));
                    continue;
                }
                Assert.True(eps[8] < 1e-3, $"layer {l} expert {e}: 8-bit error {eps[8]}");
                Assert.True(eps[8] * 20 < eps[4], $"layer {l} expert {e}: 8-bit {eps[8]} vs 4-bit {eps[4]}");
                Assert.True(eps[4] < eps[3] && eps[3] < eps[2], $"layer {l} expert {e}: {eps[2]}, {eps[3]}, {eps[4]}");
            }
        }
    }

    [Fact]
    public void ErrorEqualsRerunningTheBlockWithTheExpertReplaced()
    {
        using var checkpoint = ModelCheckpoint.Open(TinyCalibrationModel.Mixtral);
        var set = Tokens(checkpoint);
        var recipe = new QuantizeRecipe { Method = QuantizeMethod.Rtn, GroupSize = 32 };
        var result = ExpertSensitivity.Measure(checkpoint, set, null,
            new ExpertSensitivityOptions { Candidates = [2, 3], Recipe = recipe, MicroBatch = 64 });

        // Oracle: Block.Forward(input, {i: quantized expert i}) − Output, summed over the micro-batches.
        var delta = new double[4, 8];
        var norm = new double[4];
        var observer = new DelegateBlockObserver(a =>
        {
            using var scope = NewDisposeScope();
            norm[a.Layer] += a.Output.to(ScalarType.Float64).square().sum().item<double>();
            for (var e = 0; e < a.Block.Experts.Count; e++)
            {
                var x = a.Block.Experts[e];
                Tensor Q(Tensor w, ExpertProjection p)
                {
                    using var q = recipe.Quantize(w.to(ScalarType.Float32), p, 3, null);
                    return q.Dequantize().DetachFromDisposeScope();
                }
                using var replacement = new GatedMlp(Q(x.Gate, ExpertProjection.Gate), Q(x.Up, ExpertProjection.Up), Q(x.Down, ExpertProjection.Down), x.Activation);
                var y = a.Block.Forward(a.Input, new MoEForwardOptions { ExpertReplacements = new Dictionary<int, GatedMlp> { [e] = replacement } });
                delta[a.Layer, e] += (y - a.Output).to(ScalarType.Float64).square().sum().item<double>();
            }
        });
        CalibrationPass.Run(checkpoint, set, observer, new StreamingOptions { MicroBatchTokens = 64 });

        for (var l = 0; l < 4; l++)
            for (var e = 0; e < 8; e++)
            {
                var expected = delta[l, e] / norm[l];
                Assert.True(expected > 0 || result.RoutedTokens(l, e) == 0);
                Assert.Equal(expected, result.Error(l, e, 3), Math.Max(1e-12, 1e-4 * expected));
            }
    }

    [Fact]
    public void GptqLowersTheErrorAndColdExpertsFallBackToRtn()
    {
        using var checkpoint = ModelCheckpoint.Open(TinyCalibrationModel.DeepSeekV3);
        var profile = ProfileProvider.LoadOrCollect(checkpoint, QuantizeTestData.Profile);
        var set = Tokens(checkpoint);
        ExpertSensitivityResult Measure(QuantizeMethod method) => ExpertSensitivity.Measure(checkpoint, set, profile,
            new ExpertSensitivityOptions { Candidates = [2], Recipe = new QuantizeRecipe { Method = method, GroupSize = 32 }, MicroBatch = 64 });
        var rtn = Measure(QuantizeMethod.Rtn);
        var gptq = Measure(QuantizeMethod.Gptq);

        // The expert that no token selects is cold in every MoE layer: RTN fallback, listed, no output error.
        var moeLayers = checkpoint.MoE.MoELayerIndices().ToArray();
        Assert.Equal(moeLayers, gptq.Layers);
        foreach (var l in moeLayers)
        {
            var cold = Assert.Single(gptq.Fallbacks, f => f.Layer == l && f.Expert == TinyCalibrationModel.DeepSeekColdExpert);
            Assert.Equal("rtn", cold.Method);
            Assert.Equal(0, cold.RoutedTokens);
            Assert.Contains("cold", cold.Reason);
            Assert.Equal(0, gptq.Error(l, TinyCalibrationModel.DeepSeekColdExpert, 2));
        }
        Assert.All(gptq.Fallbacks, f => Assert.True(profile.Coverage.IsCold(f.Layer, f.Expert) || f.RoutedTokens < 16));

        // GPTQ minimises each projection's output error on the calibration inputs: the block error drops.
        double Sum(ExpertSensitivityResult r, int bits) => moeLayers.Sum(l => Enumerable.Range(0, 16).Sum(e => r.Error(l, e, bits)));
        Assert.True(Sum(gptq, 2) < Sum(rtn, 2), $"GPTQ {Sum(gptq, 2)} vs RTN {Sum(rtn, 2)} at 2 bits");
    }

    /// <summary>Calls a delegate at every MoE block.</summary>
    private sealed class DelegateBlockObserver(Action<MoEBlockActivation> onBlock) : ILayerObserver
    {
        public void OnMoEBlock(MoEBlockActivation activation) => onBlock(activation);
    }
}
