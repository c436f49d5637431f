using MoECompress.Benchmarks;
using MoECompress.Compression;

// Benchmarks print figures; they are not tests and never fail on a number. Run them in Release:
//   dotnet run -c Release --project tests/MoECompress.Benchmarks -- io [--size 2GB] [--dir /tmp/moe-bench]
//   dotnet run -c Release --project tests/MoECompress.Benchmarks -- calibrate [--layers 4]
//   dotnet run -c Release --project tests/MoECompress.Benchmarks -- compress [--size 1GB]   (prune/merge/quantize vs cp)
//   dotnet run -c Release --project tests/MoECompress.Benchmarks -- quantize                (LP solve, RTN GB/s, GPTQ s/expert)
//   dotnet run -c Release --project tests/MoECompress.Benchmarks -- quality                 (the README's quality tables, demo model)
//   dotnet run -c Release --project tests/MoECompress.Benchmarks -- scale                   (peak RSS at L and 4L layers, real widths)
//   dotnet run -c Release --project tests/MoECompress.Benchmarks -- gguf                    (the README's GGUF table, demo model)
//   dotnet run -c Release --project tests/MoECompress.Benchmarks -- fuzz [--inputs 1000000] (mutated headers/index/config: crashes, hangs)
//   dotnet run -c Release --project tests/MoECompress.Benchmarks -- substitute              (compressed-expert training per layer, demo model)
// The same native allocator as the CLI (tcmalloc when installed), so peak RSS and speed are what users get; the
// measured children inherit it.
if (NativeAllocator.Configure(args) is int childExit) return childExit;
return args.Length switch
{
    > 0 when args[0] == "io" => IoBenchmark.Run(args[1..]),
    > 0 when args[0] == IoBenchmark.ChildVerb => IoBenchmark.RunChild(args[1..]),
    > 0 when args[0] == "calibrate" => CalibrationBenchmark.Run(args[1..]),
    > 0 when args[0] == CalibrationBenchmark.ChildVerb => CalibrationBenchmark.RunChild(args[1..]),
    > 0 when args[0] == "compress" => CompressionBenchmark.Run(args[1..]),
    > 0 when args[0] == CompressionBenchmark.ChildVerb => CompressionBenchmark.RunChild(args[1..]),
    > 0 when args[0] == "quantize" => QuantizationBenchmark.Run(args[1..]),
    > 0 when args[0] == "quality" => QualityBenchmark.Run(args[1..]),
    > 0 when args[0] == "scale" => ScaleBenchmark.Run(args[1..]),
    > 0 when args[0] == ScaleBenchmark.ChildVerb => ScaleBenchmark.RunChild(args[1..]),
    > 0 when args[0] == "gguf" => GgufBenchmark.Run(args[1..]),
    > 0 when args[0] == "fuzz" => FuzzBenchmark.Run(args[1..]),
    > 0 when args[0] == "substitute" => SubstitutionBenchmark.Run(args[1..]),
    _ => Usage(),
};

static int Usage()
{
    Console.Error.WriteLine("usage: moe-compress-bench io [--size 2GB] [--dir DIR] [--rounds 3] [--cached] [--no-hash] [--keep]");
    Console.Error.WriteLine("       moe-compress-bench calibrate [--layers 4] [--hidden 256] [--samples 32] [--seq-len 256]");
    Console.Error.WriteLine("       moe-compress-bench compress [--size 1GB] [--samples 8] [--seq-len 128]");
    Console.Error.WriteLine("       moe-compress-bench quantize [--layers 58] [--experts 256] [--widths 5] [--hidden 2048] [--intermediate 1408] [--bits 4] [--gptq-memory]");
    Console.Error.WriteLine("       moe-compress-bench gguf [--out DIR] [--samples 32] [--seq-len 256] [--eval-tokens 2048]");
    Console.Error.WriteLine("       moe-compress-bench quality [--out DIR] [--section prune|merge|task|quantize|propagation|substitute]... [--samples 32] [--seq-len 256] [--eval-tokens 2048]");
    Console.Error.WriteLine("       moe-compress-bench scale [--fixture mixtral|qwen3-30b-a3b|deepseek-v2-lite]... [--layers 1] [--step calibrate|quantize|prune|merge]... [--method gptq|rtn] [--bits 3] [--mixed] [--one-size] [--max-memory-gb 16 (in GiB)] [--samples 8] [--seq-len 128] [--dir DIR]");
    Console.Error.WriteLine("       moe-compress-bench fuzz [--inputs 1000000] [--seed 1] [--threads N] [--hang-seconds 10] [--out DIR]");
    Console.Error.WriteLine("       moe-compress-bench substitute [--model M] [--device auto|cpu|cuda] [--aux 1] [--steps 60] [--batch-tokens 1024] [--lr 0.03] [--samples 32] [--seq-len 256]");
    return 2;
}
