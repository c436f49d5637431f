using System.Diagnostics;
using MoECompress.Compression.Calibration;
using MoECompress.Compression.Pruning;
using MoECompress.Formats.Errors;
using MoECompress.Tests.Calibration;

namespace MoECompress.Tests.Pruning;

/// <summary>Impossible or malformed requests fail before any profile is loaded or calibrated.</summary>
public sealed class PrunerValidationTests
{
    /// <summary>A profile request that would fail (profile not found) if the pruner got as far as loading it.</summary>
    private static readonly ProfileRequest Unreachable = new()
    {
        Profile = Path.Combine(Path.GetTempPath(), "no-such-profile-" + Guid.NewGuid().ToString("N")),
        Data = Path.Combine(Path.GetTempPath(), "no-such-data-" + Guid.NewGuid().ToString("N") + ".jsonl"),
    };

    private static MoeCompressException Fail(PruneOptions options)
    {
        var clock = Stopwatch.StartNew();
        var ex = Assert.Throws<MoeCompressException>(() => Pruner.Run(options));
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(1), $"failed after {clock.Elapsed.TotalSeconds:F2} s: {ex.Message}");
        if (options.Output is { } o && o != options.Model) Assert.False(Directory.Exists(o));
        return ex;
    }

    [Fact]
    public void TopKAboveTheKeptCountFailsAtOnce()
    {
        _ = TinyCalibrationModel.Mixtral; // write the fixture outside the timed call
        var ex = Fail(new PruneOptions
        {
            Model = TinyCalibrationModel.Mixtral, Output = TinyCalibrationModel.NewPath("out"), Keep = 1, Profile = Unreachable,
        });
        Assert.Equal(ErrorKind.Infeasible, ex.Kind);
        Assert.Contains("--keep = 1", ex.Message);
        Assert.Contains("top-k", ex.Message);

        var ratio = Fail(new PruneOptions
        {
            Model = TinyCalibrationModel.Mixtral, Output = TinyCalibrationModel.NewPath("out"), Ratio = 0.9, Profile = Unreachable,
        });
        Assert.Equal(ErrorKind.Infeasible, ratio.Kind);
        Assert.Contains("--ratio 0.9", ratio.Message);
    }

    [Fact]
    public void DeepSeekGroupViolationsFailAtOnce()
    {
        _ = PruningTestModels.DeepSeekColdGroups;
        var divisible = Fail(new PruneOptions
        {
            Model = PruningTestModels.DeepSeekColdGroups, Output = TinyCalibrationModel.NewPath("out"), Keep = 10, Profile = Unreachable,
        });
        Assert.Equal(ErrorKind.Infeasible, divisible.Kind);
        Assert.Contains("n_group = 4", divisible.Message);
        Assert.Contains("feasible: ", divisible.Message);

        // 4 groups, topk_group 2, top-4: with E' = 4 the two chosen groups offer 2 experts.
        var reach = Fail(new PruneOptions
        {
            Model = PruningTestModels.DeepSeekColdGroups, DryRun = true, Keep = 4, Profile = Unreachable,
        });
        Assert.Equal(ErrorKind.Infeasible, reach.Kind);
        Assert.Contains("topk_group", reach.Message);
    }

    [Fact]
    public void BadOptionsAreUsageErrors()
    {
        var model = TinyCalibrationModel.Mixtral;
        var output = TinyCalibrationModel.NewPath("out");
        Assert.Equal(ErrorKind.Usage, Fail(new PruneOptions { Model = model, Output = output, Profile = Unreachable }).Kind);
        Assert.Equal(ErrorKind.Usage, Fail(new PruneOptions { Model = model, Output = output, Keep = 6, Ratio = 0.25, Profile = Unreachable }).Kind);
        Assert.Equal(ErrorKind.Usage, Fail(new PruneOptions { Model = model, Output = output, Ratio = 1.0, Profile = Unreachable }).Kind);
        Assert.Contains("removes no expert", Fail(new PruneOptions { Model = model, Output = output, Ratio = 0.05, Profile = Unreachable }).Message);
        var method = Fail(new PruneOptions { Model = model, Output = output, Keep = 6, Method = "random", Profile = Unreachable });
        Assert.Equal(ErrorKind.Usage, method.Kind);
        Assert.Contains("naee", method.Message);
        Assert.Contains("--output", Fail(new PruneOptions { Model = model, Keep = 6, Profile = Unreachable }).Message);
        Assert.Equal(ErrorKind.Usage, Fail(new PruneOptions { Model = model, Output = model, Keep = 6, Profile = Unreachable, Overwrite = true }).Kind);
    }

    [Fact]
    public void AnExistingOutputIsRefusedBeforeCalibrating()
    {
        var output = TinyCalibrationModel.NewPath("exists");
        Directory.CreateDirectory(output);
        File.WriteAllText(Path.Combine(output, "keep.txt"), "mine");
        var ex = Assert.Throws<MoeCompressException>(() => Pruner.Run(new PruneOptions
        {
            Model = TinyCalibrationModel.Mixtral, Output = output, Keep = 6, Profile = Unreachable,
        }));
        Assert.Equal(ErrorKind.Io, ex.Kind);
        Assert.Contains("--overwrite", ex.Message);
        Assert.Equal("mine", File.ReadAllText(Path.Combine(output, "keep.txt")));
    }
}
