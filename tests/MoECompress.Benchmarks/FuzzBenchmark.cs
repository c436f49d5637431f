using System.Diagnostics;
using System.Text;
using MoECompress.Formats.Fuzzing;

namespace MoECompress.Benchmarks;

/// <summary>
/// The long fuzz run: mutated headers, index files and configs of six generated checkpoints (see
/// <see cref="FuzzCorpus"/>) fed in process to their parsers (<see cref="ParserFuzzTarget"/>), on every core. Prints
/// how many inputs were accepted, rejected with a documented error, crashed, or hung (one input taking longer than
/// --hang-seconds: a watchdog prints it and stops the run), with one example per crash cause written to --out.
/// Exit code 0 only when nothing crashed or hung.
/// </summary>
internal static class FuzzBenchmark
{
    public static int Run(string[] args)
    {
        long inputs = 1_000_000;
        int seed = 1, threads = Environment.ProcessorCount;
        double hangSeconds = 10;
        string workDir = Path.Combine(Path.GetTempPath(), "moe-fuzz");
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--inputs": inputs = long.Parse(args[++i]); break;
                case "--seed": seed = int.Parse(args[++i]); break;
                case "--threads": threads = int.Parse(args[++i]); break;
                case "--hang-seconds": hangSeconds = double.Parse(args[++i]); break;
                case "--out": workDir = args[++i]; break;
                default: Console.Error.WriteLine($"fuzz: unknown option {args[i]}"); return 2;
            }
        }

        using var corpus = FuzzCorpus.Create(Path.Combine(workDir, "seeds"));
        Console.WriteLine($"fuzz: {inputs:N0} inputs from {corpus.Seeds.Count} seeds " +
                          $"({string.Join(", ", corpus.Seeds.GroupBy(s => s.Kind).Select(g => $"{g.Count()} {g.Key}"))}), " +
                          $"{threads} threads, seed {seed}");
        long accepted = 0, rejected = 0, crashed = 0, done = 0;
        var crashes = new System.Collections.Concurrent.ConcurrentDictionary<string, (int Count, string Example)>();
        var started = new long[threads]; // Stopwatch ticks when the thread's current input started; 0 when idle
        var current = new (FuzzSeed Seed, byte[] Input)[threads];
        var clock = Stopwatch.StartNew();
        bool hung = false;

        using var stop = new CancellationTokenSource();
        var watchdog = new Thread(() =>
        {
            while (!stop.IsCancelled())
            {
                Thread.Sleep(500);
                for (int t = 0; t < threads; t++)
                {
                    long s = Volatile.Read(ref started[t]);
                    if (s == 0 || (clock.ElapsedTicks - s) / (double)Stopwatch.Frequency < hangSeconds) continue;
                    var (hs, hi) = current[t];
                    string file = Path.Combine(workDir, "hang.bin");
                    File.WriteAllBytes(file, hi);
                    Console.WriteLine($"fuzz: HANG: an input from {hs.Name} has run for more than {hangSeconds} s; saved to {file}");
                    hung = true;
                    Environment.Exit(3);
                }
            }
        }) { IsBackground = true };
        watchdog.Start();

        Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t =>
        {
            var random = new Random(seed * 1_000_003 + t);
            while (true)
            {
                long k = Interlocked.Increment(ref done);
                if (k > inputs) break;
                var s = corpus.Seeds[random.Next(corpus.Seeds.Count)];
                var mutations = InputMutator.Random(random, 1 + random.Next(random.Next(4) == 0 ? 12 : 4));
                var input = ParserFuzzTarget.Mutate(s, mutations, rawPrefix: random.Next(8) == 0);
                current[t] = (s, input);
                Volatile.Write(ref started[t], Math.Max(1, clock.ElapsedTicks));
                var outcome = ParserFuzzTarget.Run(s, input);
                Volatile.Write(ref started[t], 0);
                switch (outcome.Verdict)
                {
                    case FuzzVerdict.Accepted: Interlocked.Increment(ref accepted); break;
                    case FuzzVerdict.Rejected: Interlocked.Increment(ref rejected); break;
                    default:
                    {
                        Interlocked.Increment(ref crashed);
                        string key = outcome.CrashKey!;
                        crashes.AddOrUpdate(key, _ =>
                        {
                            string file = Path.Combine(workDir, $"crash-{crashes.Count}.bin");
                            File.WriteAllBytes(file, input);
                            return (1, $"{s.Name}: {outcome.Error!.GetType().Name}: {OneLine(outcome.Error.Message)} (input: {file}; {string.Join(' ', mutations)})");
                        }, (_, v) => (v.Count + 1, v.Example));
                        break;
                    }
                }
                if (k % 100_000 == 0)
                    Console.WriteLine($"fuzz: {k:N0} inputs, {clock.Elapsed.TotalSeconds:F0} s, {crashed} crashes");
            }
        });
        stop.Cancel();
        long total = accepted + rejected + crashed;
        Console.WriteLine();
        Console.WriteLine($"| inputs | accepted | rejected (exit 3/4/...) | internal errors / crashes | hangs (> {hangSeconds} s) | time | inputs/s |");
        Console.WriteLine("|---:|---:|---:|---:|---:|---:|---:|");
        Console.WriteLine($"| {total:N0} | {accepted:N0} | {rejected:N0} | {crashed:N0} | {(hung ? 1 : 0)} | {clock.Elapsed.TotalSeconds:F0} s | {total / clock.Elapsed.TotalSeconds:N0} |");
        foreach (var (key, (count, example)) in crashes.OrderByDescending(c => c.Value.Count))
            Console.WriteLine($"crash ×{count}: {key}\n    e.g. {example}");
        return crashed == 0 && !hung ? 0 : 1;
    }

    private static bool IsCancelled(this CancellationTokenSource cts) => cts.IsCancellationRequested;

    private static string OneLine(string s) => new StringBuilder(s).Replace('\n', ' ').Replace('\r', ' ').ToString();
}
