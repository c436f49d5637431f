using System.Text.Json.Nodes;
using MoECompress.Compression.Pruning;
using MoECompress.Compression.Quantization;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Safetensors;
using MoECompress.Tests.Calibration;
using MoECompress.Tests.Quantization;

namespace MoECompress.Tests.Pruning;

/// <summary>
/// Pruning with compressed propagation (one layer at a time, each layer measured on the pruned layers' outputs): the
/// first layer decides as with original propagation, later layers see other inputs, an interrupted run resumes from
/// its journal to the same bytes, and options that cannot be honoured are refused by name.
/// </summary>
public sealed class SequentialPruneTests
{
    private static PruneOptions Options(string name) => new()
    {
        Model = TinyCalibrationModel.Mixtral, Output = TinyCalibrationModel.NewPath(name), Ratio = 0.25, Profile = QuantizeTestData.Profile,
    };

    private static string Shards(string dir) =>
        JsonNode.Parse(File.ReadAllText(Path.Combine(dir, CheckpointManifest.FileName)))!["shards"]!.ToJsonString();

    [Fact]
    public void Compressed_propagation_is_the_default_and_changes_only_what_later_layers_measure()
    {
        var compressed = Pruner.Run(Options("seqprune-c"));
        var original = Pruner.Run(Options("seqprune-o") with { Propagate = Propagation.Original });
        Assert.Equal(Propagation.Compressed, compressed.Propagation);
        Assert.Equal(Propagation.Original, original.Propagation);
        Assert.Equal("compressed", Pruner.Run(Options("seqprune-dry") with { DryRun = true, Output = null }).ToJsonObject()["propagation"]!.GetValue<string>());

        // Layer 0 sees the embeddings either way: same scores and choice.
        var c0 = compressed.Layers.Single(l => l.Layer == 0);
        var o0 = original.Layers.Single(l => l.Layer == 0);
        Assert.Equal(o0.Kept.Select(k => k.Original), c0.Kept.Select(k => k.Original));
        Assert.Equal(o0.Kept.Select(k => k.Score), c0.Kept.Select(k => k.Score));
        // Later layers are measured on the pruned layer 0's outputs: their scores move.
        var later = compressed.Layers.Where(l => l.Layer > 0 && !l.IsMtp).ToList();
        Assert.NotEmpty(later);
        Assert.Contains(later, l =>
        {
            var o = original.Layers.Single(x => x.Layer == l.Layer);
            var cs = l.Kept.Concat(l.Removed).OrderBy(k => k.Original).Select(k => k.Score).ToArray();
            var os = o.Kept.Concat(o.Removed).OrderBy(k => k.Original).Select(k => k.Score).ToArray();
            return cs.Zip(os).Any(p => Math.Abs(p.First - p.Second) > 1e-6 * Math.Max(1, Math.Abs(p.Second)));
        });
        Assert.False(Directory.Exists(Pruner.JournalDirectory(compressed.Output!)));
    }

    [Theory]
    [InlineData("layer 0:")]
    [InlineData("layer 2:")]
    public void A_run_stopped_after_a_layer_resumes_from_its_journal_to_the_same_bytes(string stopAfter)
    {
        var reference = Shards(Pruner.Run(Options("seqprune-ref")).Output!);
        var options = Options("seqprune-resume");
        using var cts = new CancellationTokenSource();
        Assert.ThrowsAny<OperationCanceledException>(() => Pruner.Run(options, new StopAfter(stopAfter, cts), cts.Token));
        Assert.False(Directory.Exists(options.Output));
        var journal = Pruner.JournalDirectory(options.Output!);
        Assert.True(File.Exists(Path.Combine(journal, "journal.json")));

        // Without --resume the leftover journal is named, never reused; with it the run continues and commits.
        var refused = Assert.Throws<MoeCompressException>(() => Pruner.Run(options));
        Assert.Equal(ErrorKind.Io, refused.Kind);
        Assert.Contains(journal, refused.Message);
        Assert.Contains("--resume", refused.Message);
        var lines = new List<string>();
        var resumed = Pruner.Run(options with { Resume = true }, new Collect(lines));
        Assert.Contains(lines, l => l.StartsWith("resuming the interrupted prune at layer", StringComparison.Ordinal));
        Assert.DoesNotContain(lines, l => l.StartsWith(stopAfter + " kept", StringComparison.Ordinal)); // the finished layers are not run again
        Assert.False(Directory.Exists(journal));
        Assert.Equal(reference, Shards(resumed.Output!));
    }

    [Fact]
    public void A_resume_with_other_options_is_refused_by_name()
    {
        var options = Options("seqprune-other");
        using var cts = new CancellationTokenSource();
        Assert.ThrowsAny<OperationCanceledException>(() => Pruner.Run(options, new StopAfter("layer 1:", cts), cts.Token));
        var e = Assert.Throws<MoeCompressException>(() => Pruner.Run(options with { Ratio = 0.5, Resume = true }));
        Assert.Equal(ErrorKind.Usage, e.Kind);
        Assert.Contains("journal.json", e.Message);
        Assert.Contains("other options", e.Message);
    }

    [Fact]
    public void Compressed_propagation_that_cannot_be_honoured_is_refused_by_option()
    {
        var e = Assert.Throws<MoeCompressException>(() => Pruner.Run(Options("seqprune-global") with { Global = true, Propagate = Propagation.Compressed }));
        Assert.StartsWith("--propagate compressed: --global", e.Message);
        e = Assert.Throws<MoeCompressException>(() => Pruner.Run(Options("seqprune-naee") with { Method = "naee", Propagate = Propagation.Compressed }));
        Assert.StartsWith("--propagate compressed: --method naee", e.Message);
        e = Assert.Throws<MoeCompressException>(() => Pruner.Run(Options("seqprune-resume-orig") with { Propagate = Propagation.Original, Resume = true }));
        Assert.StartsWith("--resume:", e.Message);
        // Global ranking falls back to original propagation by default.
        Assert.Equal(Propagation.Original, Pruner.Run(Options("seqprune-global-default") with { Global = true, Ratio = 0.5, DryRun = true, Output = null }).Propagation);
    }

    private sealed class StopAfter(string prefix, CancellationTokenSource cts) : IProgress<string>
    {
        public void Report(string value)
        {
            if (value.StartsWith(prefix, StringComparison.Ordinal)) cts.Cancel();
        }
    }

    private sealed class Collect(List<string> lines) : IProgress<string>
    {
        public void Report(string value) => lines.Add(value);
    }
}
