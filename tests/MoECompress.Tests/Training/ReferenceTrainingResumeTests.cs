using MoECompress.Compression.Training;
using MoECompress.Formats.Errors;

namespace MoECompress.Tests.Training;

[Collection(nameof(MoECompress.Tests.Reliability.LibtorchThreadCount))] // 1 thread, and bit-identity between runs
public class ReferenceTrainingResumeTests
{
    [Fact]
    public void StoppedAndResumedRunEqualsAnUninterruptedOne()
    {
        using var f = new ResumableTrainingFixture();
        var resumed = f.Output("out");
        var straight = ResumableTrainingFixture.TrainStraightAndMoveAside(f.Options(resumed));

        ResumableTrainingFixture.TrainAndStop(f.Options(resumed), stopAfter: 3);
        var checkpoints = new TrainingCheckpoints(resumed + ".training");
        Assert.EndsWith("step-00000003", checkpoints.Latest());

        var messages = new List<string>();
        var result = ReferenceModelTrainer.Train(f.Options(resumed) with { Resume = true },
            new ResumableTrainingFixture.Hook(p => messages.Add(p.Message)));
        Assert.Contains(messages, m => m.StartsWith("resuming after step 3", StringComparison.Ordinal));
        Assert.Equal(Enumerable.Range(1, 6), result.Log.Select(r => r.Step)); // rows before the stop come from the checkpoint
        Assert.Equal(3, messages.Count(m => m.StartsWith("step ", StringComparison.Ordinal)));
        ResumableTrainingFixture.AssertSameCheckpoint(straight, resumed);
        Assert.False(Directory.Exists(checkpoints.Folder));
    }

    [Fact]
    public void PeriodicCheckpointSurvivesAKillInTheMiddleOfALogRow()
    {
        using var f = new ResumableTrainingFixture();
        var killed = f.Output("out");
        var straight = ResumableTrainingFixture.TrainStraightAndMoveAside(f.Options(killed) with { LogEvery = 2 });

        // Killed (an exception, not a cancellation: nothing is saved on the way out) right after step 4; the periodic
        // checkpoint of step 3 holds half a log row.
        var options = f.Options(killed) with { LogEvery = 2, CheckpointEvery = 3 };
        var kill = new ResumableTrainingFixture.Hook(p => { if (p.Row?.Step == 4) throw new IOException("killed"); });
        Assert.Throws<IOException>(() => ReferenceModelTrainer.Train(options, kill));
        var folder = killed + ".training";
        Assert.Equal(["step-00000003"], Directory.GetDirectories(folder).Select(Path.GetFileName));
        // A checkpoint write killed half-way leaves a hidden temporary folder: ignored, and deleted by the next save.
        var leftover = Path.Combine(folder, ".step-00000004.tmp-0badf00d");
        Directory.CreateDirectory(leftover);
        File.WriteAllText(Path.Combine(leftover, "model.safetensors"), "half");

        ReferenceModelTrainer.Train(options with { Resume = true });
        ResumableTrainingFixture.AssertSameCheckpoint(straight, killed);
    }

    [Fact]
    public void CheckpointsAreOnlyKeptUntilTheNextOne()
    {
        using var f = new ResumableTrainingFixture();
        var output = f.Output("out");
        var seen = new List<string[]>();
        var folder = output + ".training";
        var watch = new ResumableTrainingFixture.Hook(p =>
        {
            if (p.Message.StartsWith("checkpoint after", StringComparison.Ordinal))
                seen.Add(Directory.GetFileSystemEntries(folder).Select(Path.GetFileName).OfType<string>().ToArray());
        });
        ReferenceModelTrainer.Train(f.Options(output, steps: 5) with { CheckpointEvery = 2 }, watch);
        // Steps 2 and 4, and the last one (it guards the export); each replaces the previous.
        Assert.Equal([["step-00000002"], ["step-00000004"], ["step-00000005"]], seen);
    }

    [Fact]
    public void ResumeWithAChangedOptionIsRefusedNamingIt()
    {
        using var f = new ResumableTrainingFixture();
        var output = f.Output("out");
        ResumableTrainingFixture.TrainAndStop(f.Options(output), stopAfter: 2);
        var latest = new TrainingCheckpoints(output + ".training").Latest();

        foreach (var (changed, option) in new[]
                 {
                     (f.Options(output) with { LearningRate = 2e-3 }, "--lr"),
                     (f.Options(output) with { Seed = 6 }, "--seed"),
                     (f.Options(output, steps: 7), "--steps"),
                     (f.Options(output) with { Layers = 2 }, "--layers"),
                 })
        {
            var e = Assert.Throws<MoeCompressException>(() => ReferenceModelTrainer.Train(changed with { Resume = true }));
            Assert.Equal(ErrorKind.Usage, e.Kind);
            Assert.Contains($"{option} was ", e.Message);
            Assert.Contains(latest!, e.Message);
            Assert.DoesNotContain('\n', e.Message);
        }

        // Other training text (same file names) is refused too, after tokenization.
        File.AppendAllText(Path.Combine(f.Data, "prose.txt"), "One more line.\n");
        var data = Assert.Throws<MoeCompressException>(() => ReferenceModelTrainer.Train(f.Options(output) with { Resume = true }));
        Assert.Contains("--train-data", data.Message);
        Assert.Equal(latest, new TrainingCheckpoints(output + ".training").Latest()); // refusals leave it alone
    }

    [Fact]
    public void ResumeWithoutACheckpointAndAnExistingFolderWithoutResumeAreErrors()
    {
        using var f = new ResumableTrainingFixture();
        var output = f.Output("out");
        var none = Assert.Throws<MoeCompressException>(() => ReferenceModelTrainer.Train(f.Options(output) with { Resume = true }));
        Assert.Equal(ErrorKind.Usage, none.Kind);
        Assert.Contains("--resume: no checkpoint", none.Message);
        Assert.False(Directory.Exists(output + ".training"));

        ResumableTrainingFixture.TrainAndStop(f.Options(output), stopAfter: 2);
        var folder = output + ".training";
        var before = Directory.GetFileSystemEntries(folder, "*", SearchOption.AllDirectories)
            .ToDictionary(p => p, p => File.Exists(p) ? File.ReadAllBytes(p) : []);
        var exists = Assert.Throws<MoeCompressException>(() => ReferenceModelTrainer.Train(f.Options(output)));
        Assert.Equal(ErrorKind.Usage, exists.Kind);
        Assert.Contains(folder, exists.Message);
        Assert.Contains("--resume", exists.Message);
        var after = Directory.GetFileSystemEntries(folder, "*", SearchOption.AllDirectories);
        Assert.Equal(before.Keys.Order(), after.Order());
        Assert.All(before, kv => Assert.True(!File.Exists(kv.Key) || File.ReadAllBytes(kv.Key).AsSpan().SequenceEqual(kv.Value), kv.Key));
    }

    [Fact]
    public void ADamagedCheckpointIsRefused()
    {
        using var f = new ResumableTrainingFixture();
        var output = f.Output("out");
        ResumableTrainingFixture.TrainAndStop(f.Options(output), stopAfter: 2);
        var weights = Path.Combine(new TrainingCheckpoints(output + ".training").Latest()!, "model.safetensors");
        var bytes = File.ReadAllBytes(weights);
        bytes[^1] ^= 0x40;
        File.WriteAllBytes(weights, bytes);
        var e = Assert.Throws<MoeCompressException>(() => ReferenceModelTrainer.Train(f.Options(output) with { Resume = true }));
        Assert.Equal(ErrorKind.InvalidCheckpoint, e.Kind);
        Assert.Contains("damaged", e.Message);
    }
}
