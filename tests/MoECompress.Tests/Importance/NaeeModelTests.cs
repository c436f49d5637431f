using MoECompress.Compression.Calibration;
using MoECompress.Compression.Data;
using MoECompress.Compression.Importance;
using MoECompress.Compression.Model;
using MoECompress.Formats.Families;
using MoECompress.Tests.Calibration;
using static TorchSharp.torch;

namespace MoECompress.Tests.Importance;

/// <summary>NAEE on a tiny Mixtral-like checkpoint (8 experts, top-2) against a brute-force search written out here.</summary>
public sealed class NaeeModelTests
{
    private static CalibrationSet Tokens(int count, int length, int seed) => new(
        TinyCalibrationModel.RandomSequences(count, length, 256, seed), length, new CalibrationProvenance
        {
            Files = ["random"], Documents = count, PretokenizedDocuments = count, TotalTokens = count * length, SeparatorId = null,
            BosPrepended = false, Sampling = CalibrationSampling.Sequential, Seed = seed,
            Offsets = Enumerable.Range(0, count).Select(i => (long)i * length).ToArray(), TokenizerName = "random ids",
            TextSplit = TextDocumentSplit.WholeFile,
        });

    private static ExpertScoringContext Context(ModelCheckpoint checkpoint, CalibrationSet set)
    {
        using var collector = new CalibrationCollector(new CalibrationCollectorOptions());
        CalibrationPass.Run(checkpoint, set, collector);
        // One sequence per micro-batch: NAEE accumulates its error over several cached chunks.
        return new ExpertScoringContext
        {
            Profile = collector.Build(CalibrationModelInfo.From(checkpoint.MoE)),
            Checkpoint = checkpoint,
            Tokens = set,
            Streaming = new StreamingOptions { MicroBatchTokens = set.SeqLen },
        };
    }

    /// <summary>Σ‖routed output with <paramref name="removed"/> never routed to − routed output‖² for one layer, by brute
    /// force over all tokens at once (memoised).</summary>
    private static Dictionary<int, Func<int[], double>> BruteForceErrors(ModelCheckpoint checkpoint, CalibrationSet set, int onlyLayer,
        out List<IDisposable> owned)
    {
        var capture = new MoEInputCapture();
        CalibrationPass.Run(checkpoint, set, capture);
        var engine = new ModelEngine(checkpoint);
        var result = new Dictionary<int, Func<int[], double>>();
        owned = [];
        foreach (var l in new[] { onlyLayer })
        {
            var layer = engine.LoadLayer(l);
            owned.Add(layer);
            var rows = capture.Tokens(l);
            var x = tensor(rows.SelectMany(r => r.Select(v => (float)v)).ToArray(), new long[] { rows.Count, capture.HiddenSize });
            x.DetachFromDisposeScope();
            owned.Add(x);
            var block = layer.MoE!;
            var reference = block.Forward(x, new MoEForwardOptions { IncludeSharedExperts = false }).DetachFromDisposeScope();
            owned.Add(reference);
            var memo = new Dictionary<string, double>();
            result[l] = removed =>
            {
                var key = string.Join(",", removed);
                if (memo.TryGetValue(key, out var known)) return known;
                using var scope = NewDisposeScope();
                var kept = Enumerable.Range(0, block.Experts.Count).Select(e => !removed.Contains(e)).ToArray();
                var y = block.Forward(x, new MoEForwardOptions { KeptExperts = kept, IncludeSharedExperts = false });
                return memo[key] = (y - reference).to_type(ScalarType.Float64).square().sum().item<double>();
            };
        }
        return result;
    }

    [Fact]
    public void ExhaustiveSearchEqualsBruteForceAndGreedyTakesOverBeyondTheLimit()
    {
        using var noGrad = no_grad();
        using var checkpoint = ModelCheckpoint.Open(TinyCalibrationModel.Mixtral);
        var set = Tokens(2, 10, 11);
        var context = Context(checkpoint, set);
        const int Layer = 1;
        var brute = BruteForceErrors(checkpoint, set, Layer, out var owned);
        try
        {
            var request = new KeepRequest { Keep = 6, Layers = [Layer] };
            var empty = new ExpertScores("naee", new Dictionary<int, double[]>());
            var exhaustive = new NaeeScorer().SelectKept(context, empty, request);
            var greedy = new NaeeScorer(exhaustiveLimit: 27).SelectKept(context, empty, request);
            foreach (var (l, error) in brute)
            {
                var pairs = NaeeSubsetSearchCombinations(8, 2).Select(p => (Removed: p, Error: error(p))).ToList();
                var best = pairs.MinBy(p => p.Error);
                var chosen = exhaustive[l];
                Assert.Contains("exhaustive search over 28 subsets", chosen.Rule);
                Assert.Equal(best.Removed, Enumerable.Range(0, 8).Except(chosen.Kept));
                Assert.Equal(best.Error, chosen.OutputError!.Value, best.Error * 1e-4 + 1e-9);

                // Greedy by hand: the cheapest single removal, then the cheapest second one with it.
                var first = Enumerable.Range(0, 8).MinBy(e => error([e]));
                var second = Enumerable.Range(0, 8).Where(e => e != first).MinBy(e => error(new[] { first, e }.Order().ToArray()));
                Assert.Contains("greedy", greedy[l].Rule);
                Assert.Equal(new[] { first, second }.Order(), Enumerable.Range(0, 8).Except(greedy[l].Kept));
                Assert.True(greedy[l].OutputError >= chosen.OutputError * (1 - 1e-6));
            }

            Assert.Equal([Layer], exhaustive.Keys);

            // Scores: the error of removing each expert alone.
            var scores = new NaeeScorer().Score(context);
            Assert.Equal(context.Profile.Layers.Select(l => l.Layer), scores.Layers);
            foreach (var (l, error) in brute)
                for (var e = 0; e < 8; e++)
                    Assert.Equal(error([e]), scores.Of(l)[e], error([e]) * 1e-4 + 1e-9);
        }
        finally
        {
            foreach (var o in owned) o.Dispose();
        }
    }

    [Fact]
    public void GroupsLoseOneExpertEachAndProtectedExpertsStay()
    {
        using var checkpoint = ModelCheckpoint.Open(TinyCalibrationModel.DeepSeekV3);
        var set = Tokens(1, 12, 5);
        var context = Context(checkpoint, set);
        var layers = context.Profile.Layers.Select(l => l.Layer).Take(1).ToList();
        var protectedExperts = layers.ToDictionary(l => l, _ => (IReadOnlyCollection<int>)[0, 7]);
        var result = new NaeeScorer(exhaustiveLimit: 0).SelectKept(context, new ExpertScores("naee", new Dictionary<int, double[]>()),
            new KeepRequest { Keep = 12, Groups = 4, Protected = protectedExperts, Layers = layers });
        Assert.Equal(layers, result.Keys);
        foreach (var selection in result.Values)
        {
            Assert.Equal(12, selection.Kept.Count);
            Assert.All(Enumerable.Range(0, 4), g => Assert.Equal(3, selection.Kept.Count(e => e / 4 == g)));
            Assert.Contains(0, selection.Kept);
            Assert.Contains(7, selection.Kept);
            Assert.Contains("greedy", selection.Rule);
        }
    }

    private static IEnumerable<int[]> NaeeSubsetSearchCombinations(int n, int r)
    {
        for (var a = 0; a < n; a++)
            for (var b = a + 1; b < n; b++)
                yield return r == 2 ? [a, b] : throw new NotSupportedException();
    }
}
