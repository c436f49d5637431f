using System.Diagnostics;
using MoECompress.Cli;
using MoECompress.Formats.Families;
using MoECompress.Formats.Safetensors;
using MoECompress.Tests.Calibration;
using MoECompress.Tests.Cli;
using MoECompress.Tests.Quantization;

namespace MoECompress.Tests.Reliability;

/// <summary>
/// SIGKILL during prune, merge and quantize (the built CLI as a child process): at no kill point is a partial checkpoint
/// left at the destination; the leftover, if any, is the writer's temporary folder and lock file beside it
/// (<c>.NAME.tmp-*</c>) or, for prune and merge, the journal of their finished layers (<c>.NAME.prune-journal</c>), and the next run
/// to the same destination deletes the dead writer's files and succeeds (continuing the journal with --resume).
/// </summary>
public sealed class KillSafetyTests
{
    /// <summary>Where to kill: while the model loads and calibrates, as soon as the temporary folder appears, or once a shard in it has data.</summary>
    public enum KillPoint { BeforeWriting, TemporaryFolderAppears, ShardHasData }

    private static string[] Calibration => ["--data", QuantizeTestData.TokenData, "--samples", "4", "--seq-len", "32"];

    public static TheoryData<string, KillPoint> Cases() => new()
    {
        { "prune", KillPoint.BeforeWriting }, { "prune", KillPoint.TemporaryFolderAppears }, { "prune", KillPoint.ShardHasData },
        { "quantize", KillPoint.TemporaryFolderAppears }, { "quantize", KillPoint.ShardHasData },
        { "merge", KillPoint.BeforeWriting }, { "merge", KillPoint.ShardHasData },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void KilledRunLeavesNoPartialOutputAndTheNextRunCleansUp(string command, KillPoint point)
    {
        if (!OperatingSystem.IsLinux() && !OperatingSystem.IsMacOS()) return; // SIGKILL semantics
        var parent = TinyCalibrationModel.NewPath($"kill-{command}-{point}");
        Directory.CreateDirectory(parent);
        var output = Path.Combine(parent, "out");
        string[] args = command switch
        {
            "prune" => ["prune", TinyCalibrationModel.Mixtral, output, "--keep", "6", "--method", "frequency", .. Calibration],
            "merge" => ["merge", TinyCalibrationModel.Mixtral, output, "--keep", "6", .. Calibration],
            _ => ["quantize", TinyCalibrationModel.Mixtral, output, "--bits", "4", "--uniform", "--method", "rtn", "--group-size", "32", .. Calibration],
        };
        var journal = $".out.{command}-journal";

        bool killedWhileWriting = RunAndKill(args, parent, point);

        if (Directory.Exists(output))
        {
            // The kill came after the rename: the output must then be a whole, verified checkpoint.
            Assert.False(killedWhileWriting);
            using var done = ModelCheckpoint.Open(output);
            Assert.NotNull(CheckpointManifest.Read(output));
        }
        var leftovers = Directory.GetFileSystemEntries(parent).Select(Path.GetFileName).Where(n => n != "out").ToArray();
        Assert.All(leftovers, n => Assert.True(n!.StartsWith(".out.tmp-", StringComparison.Ordinal) || n == journal, n));
        if (killedWhileWriting) Assert.Contains(leftovers, n => n!.EndsWith(".lock", StringComparison.Ordinal));

        // The next run to the same destination removes the dead writer's folder and lock file (and finishes the journal).
        if (Directory.Exists(output)) Directory.Delete(output, true);
        var again = CliRunner.Run(leftovers.Contains(journal) ? [.. args, "--resume"] : args);
        Assert.True(again.ExitCode == 0, again.Stderr);
        Assert.Equal(["out"], Directory.GetFileSystemEntries(parent).Select(Path.GetFileName).ToArray());
        using var reopened = ModelCheckpoint.Open(output);
    }

    [Fact]
    public void ALiveWritersTemporaryFolderIsNotTouched()
    {
        var parent = TinyCalibrationModel.NewPath("kill-live");
        var plan = new[] { new TensorSpec("a", SafetensorsDType.F32, [4]) };
        using var live = CheckpointWriter.Create(Path.Combine(parent, "out"), plan);
        // A second writer for the same destination runs its cleanup; the first one's folder must survive it.
        using (CheckpointWriter.Create(Path.Combine(parent, "out"), plan)) { }
        Assert.True(Directory.Exists(live.TemporaryDirectory));
        live.Write("a", new byte[16]);
        live.Commit();
        Assert.Equal(["out"], Directory.GetFileSystemEntries(parent).Select(Path.GetFileName).ToArray());
    }

    /// <summary>Starts the CLI, kills it at <paramref name="point"/>; true when the kill landed while the temporary folder existed.</summary>
    private static bool RunAndKill(string[] args, string parent, KillPoint point)
    {
        var cli = typeof(CliApp).Assembly.Location;
        var psi = new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet")
        {
            UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true,
        };
        psi.ArgumentList.Add(cli);
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["MOE_COMPRESS_ALLOCATOR"] = "system"; // no re-exec: the process we kill is the one writing
        using var process = Process.Start(psi)!;
        process.StandardOutput.ReadToEndAsync();
        process.StandardError.ReadToEndAsync();
        var clock = Stopwatch.StartNew();
        bool writing = false;
        while (!process.HasExited && clock.Elapsed < TimeSpan.FromSeconds(120))
        {
            var temp = Directory.GetDirectories(parent, ".out.tmp-*").FirstOrDefault();
            bool fire = point switch
            {
                KillPoint.BeforeWriting => clock.Elapsed > TimeSpan.FromMilliseconds(1500),
                KillPoint.TemporaryFolderAppears => temp is not null,
                _ => temp is not null && SafeFiles(temp).Any(f => f.EndsWith(".safetensors", StringComparison.Ordinal) && new FileInfo(f).Length > 0),
            };
            if (fire)
            {
                writing = temp is not null && Directory.Exists(temp);
                process.Kill();
                break;
            }
            Thread.Sleep(1);
        }
        process.WaitForExit();
        return writing && !Directory.Exists(Path.Combine(parent, "out"));
    }

    private static string[] SafeFiles(string dir)
    {
        try { return Directory.GetFiles(dir); }
        catch (DirectoryNotFoundException) { return []; }
    }
}
