using MoECompress.Tests.Infrastructure;
using MoECompress.Compression.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace MoECompress.Tests.Model;

public class StreamingRunnerTests
{
    private static readonly int[][] Sequences =
    {
        TinyModel.Tokens(11, 7),
        TinyModel.Tokens(12, 5),
        TinyModel.Tokens(13, 7),
        TinyModel.Tokens(14, 1),
    };

    private static void AssertAllClose(IReadOnlyList<Tensor> expected, IReadOnlyList<Tensor> actual, double tol, string what)
    {
        Assert.Equal(expected.Count, actual.Count);
        for (var i = 0; i < expected.Count; i++)
        {
            Assert.Equal(expected[i].shape, actual[i].shape);
            Assert.True(expected[i].allclose(actual[i], tol, tol), $"{what}: item {i} max |diff| {(expected[i] - actual[i]).abs().max().item<float>()}");
        }
    }

    private static void DisposeAll(IEnumerable<Tensor> tensors)
    {
        foreach (var t in tensors) t.Dispose();
    }

    [Theory]
    [MemberData(nameof(TinyModel.Kinds), MemberType = typeof(TinyModel))]
    public void StreamingLogitsEqualWholeModelLogits(string kind)
    {
        using var model = TinyModel.Create(kind, layers: 3);
        var engine = model.Engine();
        using var resident = engine.LoadResident();
        var expected = Sequences.Select(s => resident.Forward(s)).ToArray();
        var streamed = engine.CreateRunner(new StreamingOptions { MicroBatchTokens = 14, HeadChunkTokens = 3 }).ComputeLogits(Sequences);
        try
        {
            AssertAllClose(expected, streamed, 1e-5, kind);
            Assert.All(streamed, t => Assert.False(t.isnan().any().item<bool>()));
        }
        finally
        {
            DisposeAll(expected);
            DisposeAll(streamed);
        }
    }

    [Theory]
    [MemberData(nameof(TinyModel.Kinds), MemberType = typeof(TinyModel))]
    public void EngineRunsFromAValidatedCheckpoint(string kind)
    {
        using var model = TinyModel.Create(kind, layers: 2);
        using var checkpoint = Formats.Families.ModelCheckpoint.FromSource(model.Config, $"tiny-{kind}/config.json", model.Source);
        var fromCheckpoint = new ModelEngine(checkpoint).CreateRunner().ComputeLogits(Sequences);
        var direct = model.Engine().CreateRunner().ComputeLogits(Sequences);
        try
        {
            AssertAllClose(direct, fromCheckpoint, 0, kind);
        }
        finally
        {
            DisposeAll(direct);
            DisposeAll(fromCheckpoint);
        }
    }

    [Fact]
    public void SpilledHiddenStatesGiveTheSameLogitsAsHiddenStatesInMemory()
    {
        using var model = TinyModel.Create("qwen2_moe", layers: 3);
        var engine = model.Engine();
        var spillDir = Directory.CreateTempSubdirectory("moe-engine-test-").FullName;
        try
        {
            var inRam = engine.CreateRunner().ComputeLogits(Sequences);
            var spilledRunner = engine.CreateRunner(new StreamingOptions { MaxResidentHiddenStateBytes = 0, SpillDirectory = spillDir });
            using (var session = spilledRunner.Start(Sequences))
            {
                Assert.True(session.HiddenStatesSpilled);
                Assert.Single(Directory.GetFiles(spillDir));
            }
            Assert.Empty(Directory.GetFiles(spillDir));
            var spilled = spilledRunner.ComputeLogits(Sequences);
            try
            {
                AssertAllClose(inRam, spilled, 0, "spilled vs RAM");
            }
            finally
            {
                DisposeAll(inRam);
                DisposeAll(spilled);
            }
            Assert.Empty(Directory.GetFiles(spillDir));
        }
        finally
        {
            Directory.Delete(spillDir, true);
        }
    }

    [Fact]
    public void MicroBatchSizeDoesNotChangeTheResult()
    {
        using var model = TinyModel.Create("deepseek_v3", layers: 3);
        var engine = model.Engine();
        var one = engine.CreateRunner(new StreamingOptions { MicroBatchTokens = 1, HeadChunkTokens = 1 }).ComputeLogits(Sequences);
        var many = engine.CreateRunner(new StreamingOptions { MicroBatchTokens = 1000, HeadChunkTokens = 1000 }).ComputeLogits(Sequences);
        try
        {
            AssertAllClose(one, many, 1e-5, "micro-batch 1 vs 1000 tokens");
        }
        finally
        {
            DisposeAll(one);
            DisposeAll(many);
        }
    }

    [Fact]
    public void MicroBatchesGroupSequencesOfEqualLength()
    {
        var batches = StreamingSession.PlanMicroBatches(Sequences, 14);
        Assert.Equal(new[] { "0,2", "1", "3" }, batches.Select(b => string.Join(",", b.SequenceIndices)));
        Assert.Equal(new[] { 7, 5, 1 }, batches.Select(b => b.SequenceLength));
        var small = StreamingSession.PlanMicroBatches(Sequences, 6);
        Assert.Equal(new[] { "0", "2", "1", "3" }, small.Select(b => string.Join(",", b.SequenceIndices)));
        Assert.Equal((2, 3), batches[0].Locate(10));
    }

    [Fact]
    public void NextTokenLogProbsMatchTheLogits()
    {
        using var model = TinyModel.Create("olmoe", layers: 2);
        var runner = model.Engine().CreateRunner(new StreamingOptions { HeadChunkTokens = 2 });
        var logits = runner.ComputeLogits(Sequences);
        var logProbs = runner.ComputeNextTokenLogProbs(Sequences);
        var full = runner.ComputeLogProbs(Sequences);
        try
        {
            for (var s = 0; s < Sequences.Length; s++)
                Assert.True(full[s].allclose(logits[s].log_softmax(-1), 1e-6, 1e-6));
            for (var s = 0; s < Sequences.Length; s++)
            {
                Assert.Equal(Sequences[s].Length - 1, logProbs[s].Length);
                using var lp = logits[s].log_softmax(-1);
                for (var t = 0; t + 1 < Sequences[s].Length; t++)
                    Tolerance.Close(lp[t, Sequences[s][t + 1]].item<float>(), logProbs[s][t], Tolerance.Float32, 1e-6);
            }
        }
        finally
        {
            DisposeAll(logits);
            DisposeAll(full);
        }
    }

    [Fact]
    public void LayerOutputsSeenByTheObserverMatchTheWholeModel()
    {
        using var model = TinyModel.Create("mixtral", layers: 3);
        var engine = model.Engine();
        var residentOutputs = new Dictionary<(int Layer, int Seq), Tensor>();
        var streamedOutputs = new Dictionary<(int Layer, int Seq), Tensor>();
        var events = new List<string>();
        try
        {
            using (var resident = engine.LoadResident())
                for (var s = 0; s < Sequences.Length; s++)
                {
                    var seq = s;
                    var observer = new DelegateObserver(onLayerOutput: a => residentOutputs[(a.Layer, seq)] = a.Output[0].clone().DetachFromDisposeScope());
                    resident.Forward(Sequences[s], observer).Dispose();
                }
            var streaming = new DelegateObserver(
                onLayerStart: l => events.Add($"start {l.Index}"),
                onLayerEnd: l => events.Add($"end {l.Index}"),
                onLayerOutput: a =>
                {
                    for (var b = 0; b < a.Batch.SequenceIndices.Count; b++)
                        streamedOutputs[(a.Layer, a.Batch.SequenceIndices[b])] = a.Output[b].clone().DetachFromDisposeScope();
                });
            using var session = engine.CreateRunner(new StreamingOptions { MicroBatchTokens = 14 }).Start(Sequences);
            for (var l = 0; l < 3; l++)
            {
                session.RunNextLayer(streaming);
                // What the session stores after a layer is that layer's output.
                for (var s = 0; s < Sequences.Length; s++)
                {
                    using var stored = session.ReadHiddenStates(s);
                    Assert.True(stored.allclose(streamedOutputs[(l, s)], 0, 0));
                }
            }
            Assert.True(session.AllLayersDone);
            Assert.Equal(new[] { "start 0", "end 0", "start 1", "end 1", "start 2", "end 2" }, events);
            Assert.Equal(residentOutputs.Keys.OrderBy(k => k), streamedOutputs.Keys.OrderBy(k => k));
            foreach (var key in residentOutputs.Keys)
                Assert.True(residentOutputs[key].allclose(streamedOutputs[key], 1e-5, 1e-5), $"layer {key.Layer} sequence {key.Seq}");
        }
        finally
        {
            DisposeAll(residentOutputs.Values);
            DisposeAll(streamedOutputs.Values);
        }
    }

    private sealed class LiveTensorProbe : ILayerObserver
    {
        public long MaxLive;
        public void OnLayerEnd(DecoderLayer layer) =>
            MaxLive = Math.Max(MaxLive, DisposeScopeManager.Statistics.ThreadTotalLiveCount);
        public void OnMoEBlock(MoEBlockActivation activation) =>
            MaxLive = Math.Max(MaxLive, DisposeScopeManager.Statistics.ThreadTotalLiveCount);
    }

    [Fact]
    public void LiveTensorsDoNotGrowWithLayerCountAndNothingLeaks()
    {
        long PeakLive(int layers, out long leaked)
        {
            using var model = TinyModel.Create("qwen2_moe", layers: layers);
            var engine = model.Engine();
            var before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
            var probe = new LiveTensorProbe();
            engine.CreateRunner(new StreamingOptions { MicroBatchTokens = 7 }).Run(Sequences, chunk => { }, probe);
            leaked = DisposeScopeManager.Statistics.ThreadTotalLiveCount - before;
            return probe.MaxLive - before;
        }

        var small = PeakLive(2, out var leakedSmall);
        var large = PeakLive(6, out var leakedLarge);
        Assert.True(small > 0, "the probe saw no live tensors");
        Assert.Equal(0, leakedSmall);
        Assert.Equal(0, leakedLarge);
        Assert.True(large <= small, $"peak live tensors grew with layers: {small} (2 layers) vs {large} (6 layers)");
    }

    [Fact]
    public void CancellationStopsTheRun()
    {
        using var model = TinyModel.Create("mixtral", layers: 2);
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        Assert.ThrowsAny<OperationCanceledException>(() =>
            model.Engine().CreateRunner().Run(Sequences, _ => { }, cancellationToken: cts.Token));
    }

    [Fact]
    public void ASessionInterruptedMidLayerRefusesToGoOn()
    {
        using var model = TinyModel.Create("mixtral", layers: 2);
        using var cts = new CancellationTokenSource();
        using var session = model.Engine().CreateRunner().Start(Sequences);
        session.RunNextLayer();
        var cancelOnStart = new DelegateObserver(onLayerStart: _ => cts.Cancel());
        Assert.ThrowsAny<OperationCanceledException>(() => session.RunNextLayer(cancelOnStart, cts.Token));
        Assert.Throws<InvalidOperationException>(() => session.RunNextLayer());
        Assert.Throws<InvalidOperationException>(() => session.ReadHiddenStates(0));
    }

    private sealed class ListProgress : IProgress<StreamingProgress>
    {
        public readonly List<StreamingProgress> Reports = new();
        public void Report(StreamingProgress value) => Reports.Add(value);
    }

    [Fact]
    public void ProgressCoversEmbeddingLayersAndHead()
    {
        using var model = TinyModel.Create("mixtral", layers: 2);
        var progress = new ListProgress();
        model.Engine().CreateRunner().Run(Sequences, _ => { }, progress: progress);
        Assert.Contains(progress.Reports, p => p.Stage == StreamingStage.Embedding && p.SequencesDone == Sequences.Length);
        Assert.Contains(progress.Reports, p => p.Stage == StreamingStage.Layer && p.Layer == 1 && p.SequencesDone == Sequences.Length);
        Assert.Contains(progress.Reports, p => p.Stage == StreamingStage.Head && p.SequencesDone == Sequences.Length);
        Assert.Equal("layer 2/2: 4/4 sequences", progress.Reports.Last(p => p.Stage == StreamingStage.Layer).ToString());
    }
}
