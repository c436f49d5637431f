using System.Diagnostics;
using MoECompress.Formats.Families;
using MoECompress.Formats.Safetensors;
using MoECompress.Formats.Synthetic;

namespace MoECompress.Benchmarks;

/// <summary>
/// Read and rewrite a generated checkpoint of at least 2 GB and compare with `cp -r` of the same folder, measured in the
/// same run. Both copies are followed by `sync` so that both pay for reaching the disk (the writer fsyncs its shards).
/// The rewrite runs in a child process so its peak RSS is its own.
/// </summary>
internal static class IoBenchmark
{
    public const string ChildVerb = "io-child";

    public static int Run(string[] args)
    {
        long size = 2L * 1024 * 1024 * 1024;
        string root = Path.Combine(Path.GetTempPath(), "moe-bench-io");
        bool keep = false, cached = false, hash = true;
        int rounds = 3;
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--size": size = ParseSize(args[++i]); break;
                case "--dir": root = args[++i]; break;
                case "--keep": keep = true; break;
                case "--cached": cached = true; break;
                case "--no-hash": hash = false; break;
                case "--rounds": rounds = int.Parse(args[++i]); break;
                default: Console.Error.WriteLine($"io: unknown option {args[i]}"); return 2;
            }
        }

        if (Directory.Exists(root)) Directory.Delete(root, true);
        Directory.CreateDirectory(root);
        string source = Path.Combine(root, "source"), cpOut = Path.Combine(root, "cp-copy"), ourOut = Path.Combine(root, "rewrite");
        try
        {
            var sw = Stopwatch.StartNew();
            var info = SyntheticCheckpoint.Write("mixtral", source, new SyntheticOptions { TargetBytes = size, ShardBytes = 1_000_000_000 });
            Console.WriteLine($"generated {info.TotalBytes / 1e9:0.00} GB in {info.ShardCount} shards, {info.TensorCount} tensors ({sw.Elapsed.TotalSeconds:0.0} s)");
            Sync();

            // Warm the page cache for both runs alike: read the source once.
            foreach (var f in Directory.GetFiles(source)) using (var s = File.OpenRead(f)) s.CopyTo(Stream.Null, 16 << 20);

            var results = new List<(double cp, double ours, long rss)>();
            string mode = (cached ? "page cache only: no sync, no fsync" : "to disk: sync after cp, fsync in the writer") +
                          (hash ? ", SHA-256 of every shard" : ", no SHA-256");
            Console.WriteLine($"mode: {mode}");
            for (int round = 0; round < rounds; round++)
            {
                double cp = Time(() => { RunProcess("cp", "-r", source, cpOut); if (!cached) Sync(); });
                Directory.Delete(cpOut, true);
                Sync();
                long rss = 0;
                double ours = Time(() => { rss = RunChild(source, ourOut, cached, hash); if (!cached) Sync(); });
                Directory.Delete(ourOut, true);
                Sync();
                results.Add((cp, ours, rss));
                Console.WriteLine($"round {round + 1}: cp -r {info.TotalBytes / 1e9 / cp:0.00} GB/s ({cp:0.00} s), " +
                                  $"moe-compress rewrite {info.TotalBytes / 1e9 / ours:0.00} GB/s ({ours:0.00} s), ratio {cp / ours:0.00}x cp, peak RSS {rss / 1048576.0:0} MiB");
            }

            var median = results.Select(r => r.cp / r.ours).Order().ToList();
            Console.WriteLine();
            Console.WriteLine($"checkpoint:       {info.TotalBytes / 1e9:0.00} GB, {info.ShardCount} shards");
            Console.WriteLine($"mode:             {mode}");
            Console.WriteLine($"cp -r:            {info.TotalBytes / 1e9 / results.Min(r => r.cp):0.00} GB/s (best of {results.Count})");
            Console.WriteLine($"rewrite:          {info.TotalBytes / 1e9 / results.Min(r => r.ours):0.00} GB/s (best of {results.Count}; validate and copy)");
            Console.WriteLine($"ratio to cp:      median {median[median.Count / 2]:0.00}x, range {median.Min():0.00}x .. {median.Max():0.00}x (target >= 0.70x)");
            Console.WriteLine($"peak RSS rewrite: {results.Max(r => r.rss) / 1048576.0:0} MiB (target < 1024 MiB)");
            return 0;
        }
        finally
        {
            if (!keep && Directory.Exists(root)) Directory.Delete(root, true);
        }
    }

    /// <summary>The measured part: validate and rewrite the checkpoint, then print this process's peak RSS.</summary>
    public static int RunChild(string[] args)
    {
        bool flush = args[2] != "cached", hash = args[3] == "hash";
        using (var model = ModelCheckpoint.Open(args[0]))
        {
            CheckpointCopier.Copy((SafetensorsCheckpoint)model.Tensors, args[1],
                new CheckpointCopyOptions { Writer = new CheckpointWriterOptions { FlushToDisk = flush, HashShards = hash } });
        }
        Console.WriteLine($"peak_rss_bytes={ProcessStats.PeakRssBytes()}");
        return 0;
    }

    private static long RunChild(string source, string destination, bool cached, bool hash) =>
        long.Parse(ChildProcess.Value(ChildProcess.Run(ChildVerb, source, destination, cached ? "cached" : "disk", hash ? "hash" : "no-hash"), "peak_rss_bytes"));

    private static double Time(Action action)
    {
        var sw = Stopwatch.StartNew();
        action();
        return sw.Elapsed.TotalSeconds;
    }

    private static void Sync() => RunProcess("sync");

    private static void RunProcess(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        p.WaitForExit();
        if (p.ExitCode != 0) throw new InvalidOperationException($"{file} failed with exit code {p.ExitCode}");
    }

    private static long ParseSize(string s)
    {
        s = s.Trim().ToUpperInvariant();
        double mult = s.EndsWith("GB") ? 1e9 : s.EndsWith("MB") ? 1e6 : 1;
        return (long)(double.Parse(s.TrimEnd('G', 'M', 'B')) * mult);
    }
}
