using System.Text.Json.Nodes;
using MoECompress.Compression.Merging;
using MoECompress.Compression.Quantization;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Safetensors;
using MoECompress.Tests.Calibration;
using MoECompress.Tests.Quantization;

namespace MoECompress.Tests.Merging;

/// <summary>
/// Merging with compressed propagation (one layer at a time, each layer clustered on the merged layers' outputs): the
/// first layer decides as with original propagation, later layers see other inputs, an interrupted run resumes from its
/// journal to the same bytes (averaged and whitened-subspace merges), and options that cannot be honoured are refused by name.
/// </summary>
public sealed class SequentialMergeTests
{
    private static MergeOptions Options(string name) => new()
    {
        Model = TinyCalibrationModel.Mixtral, Output = TinyCalibrationModel.NewPath(name), Ratio = 0.25, Profile = QuantizeTestData.Profile,
    };

    private static string Shards(string dir) =>
        JsonNode.Parse(File.ReadAllText(Path.Combine(dir, CheckpointManifest.FileName)))!["shards"]!.ToJsonString();

    /// <summary>The manifest without its creation time and with the output folder's name replaced.</summary>
    private static string Manifest(string dir)
    {
        var json = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, CheckpointManifest.FileName)))!.AsObject();
        json.Remove("created_utc");
        return json.ToJsonString().Replace(JsonValue.Create(dir).ToJsonString().Trim('"'), "OUT");
    }

    [Fact]
    public void Compressed_propagation_is_the_default_and_changes_only_what_later_layers_measure()
    {
        var compressed = Merger.Run(Options("seqmerge-c"));
        var original = Merger.Run(Options("seqmerge-o") with { Propagate = Propagation.Original });
        Assert.Equal(Propagation.Compressed, compressed.Propagation);
        Assert.Equal(Propagation.Original, original.Propagation);
        Assert.Equal("compressed", compressed.ToJsonObject()["propagation"]!.GetValue<string>());
        Assert.Contains("propagation: compressed", compressed.ToMarkdown());
        Assert.Equal(8, compressed.InputExperts);
        Assert.All(compressed.Layers, l => Assert.Equal(6, l.Clusters.Count));
        Assert.All(compressed.Layers, l => Assert.Equal("measured", l.RouterRowBasis));

        // Layer 0 sees the embeddings either way: the same clusters with the same merge weights.
        static string Clusters(MergeLayerReport l) => string.Join(";", l.Clusters.Select(c => $"{string.Join(",", c.Members)}:{string.Join(",", c.Weights.Select(w => w.ToString("R")))}"));
        Assert.Equal(Clusters(original.Layers[0]), Clusters(compressed.Layers[0]));
        // Later layers are measured on the merged layer 0's outputs: their statistics (hence merge weights) move.
        Assert.Contains(compressed.Layers.Skip(1), l => Clusters(l) != Clusters(original.Layers.Single(o => o.Layer == l.Layer)));
        Assert.NotEqual(Shards(original.Output!), Shards(compressed.Output!));
        Assert.False(Directory.Exists(Merger.JournalDirectory(compressed.Output!)));

        // A dry run makes the same decisions and writes nothing.
        var dry = Merger.Run(Options("seqmerge-dry") with { DryRun = true, Output = null });
        Assert.Equal(compressed.Layers.Select(Clusters), dry.Layers.Select(Clusters));
        Assert.Equal(compressed.Layers.Select(l => l.RouterRow), dry.Layers.Select(l => l.RouterRow));
    }

    [Theory]
    [InlineData("layer 0: 8 → 6", false)]
    [InlineData("layer 2: 8 → 6", false)]
    [InlineData("layer 1: 8 → 6", true)]
    public void A_run_stopped_after_a_layer_resumes_from_its_journal_to_the_same_bytes(string stopAfter, bool whitenedSubspace)
    {
        MergeOptions With(MergeOptions o) => whitenedSubspace ? o with { Method = MergeMethod.Subspace, Whiten = true, Energy = 0.95 } : o;
        var reference = Merger.Run(With(Options("seqmerge-ref")));
        var options = With(Options("seqmerge-resume"));
        using var cts = new CancellationTokenSource();
        Assert.ThrowsAny<OperationCanceledException>(() => Merger.Run(options, new StopAfter(stopAfter, cts), cts.Token));
        Assert.False(Directory.Exists(options.Output));
        var journal = Merger.JournalDirectory(options.Output!);
        Assert.True(File.Exists(Path.Combine(journal, "journal.json")));

        // Without --resume the leftover journal is named, never reused; with it the run continues and commits.
        var refused = Assert.Throws<MoeCompressException>(() => Merger.Run(options));
        Assert.Equal(ErrorKind.Io, refused.Kind);
        Assert.Contains(journal, refused.Message);
        Assert.Contains("--resume", refused.Message);
        var lines = new List<string>();
        var resumed = Merger.Run(options with { Resume = true }, new Collect(lines));
        Assert.Contains(lines, l => l.StartsWith("resuming the interrupted merge at layer", StringComparison.Ordinal));
        Assert.DoesNotContain(lines, l => StopAfter.Finished(l, stopAfter)); // the finished layers are not run again
        Assert.False(Directory.Exists(journal));
        Assert.Equal(Shards(reference.Output!), Shards(resumed.Output!));
        // The manifest (options and the whole merge report: clusters, router-row errors, ranks kept) is the same too,
        // apart from the output path and the creation time.
        Assert.Equal(Manifest(reference.Output!), Manifest(resumed.Output!));
    }

    [Fact]
    public void A_resume_with_other_options_is_refused_by_name()
    {
        var options = Options("seqmerge-other");
        using var cts = new CancellationTokenSource();
        Assert.ThrowsAny<OperationCanceledException>(() => Merger.Run(options, new StopAfter("layer 1: 8 → 6", cts), cts.Token));
        var e = Assert.Throws<MoeCompressException>(() => Merger.Run(options with { Ratio = 0.5, Resume = true }));
        Assert.Equal(ErrorKind.Usage, e.Kind);
        Assert.Contains("journal.json", e.Message);
        Assert.Contains("other options", e.Message);
        Directory.Delete(Merger.JournalDirectory(options.Output!), recursive: true);
    }

    [Fact]
    public void Compressed_propagation_that_cannot_be_honoured_is_refused_by_option()
    {
        var profile = TinyCalibrationModel.NewPath("seqmerge-profile");
        Compression.Calibration.Calibrator.Run(new Compression.Calibration.CalibrateOptions
        {
            Model = TinyCalibrationModel.Mixtral, Out = profile, Data = QuantizeTestData.TokenData, Samples = 8, SeqLen = 24,
        });
        var fromProfile = Options("seqmerge-from-profile") with { Profile = new() { Profile = profile } };
        var e = Assert.Throws<MoeCompressException>(() => Merger.Run(fromProfile with { Propagate = Propagation.Compressed }));
        Assert.StartsWith("--propagate compressed: --profile", e.Message);
        e = Assert.Throws<MoeCompressException>(() => Merger.Run(Options("seqmerge-resume-orig") with { Propagate = Propagation.Original, Resume = true }));
        Assert.StartsWith("--resume:", e.Message);
        // A saved profile falls back to original propagation by default.
        Assert.Equal(Propagation.Original, Merger.Run(fromProfile with { DryRun = true, Output = null }).Propagation);
    }

    private sealed class StopAfter(string prefix, CancellationTokenSource cts) : IProgress<string>
    {
        /// <summary>The pass's line for a finished layer (the surgery's own per-layer lines start alike).</summary>
        public static bool Finished(string line, string prefix) =>
            line.StartsWith(prefix, StringComparison.Ordinal) && line.Contains("the next layer sees", StringComparison.Ordinal);

        public void Report(string value)
        {
            if (Finished(value, prefix)) cts.Cancel();
        }
    }

    private sealed class Collect(List<string> lines) : IProgress<string>
    {
        public void Report(string value) => lines.Add(value);
    }
}
