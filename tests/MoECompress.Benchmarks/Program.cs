using MoECompress.Benchmarks;

// Benchmarks print figures; they are not tests and never fail on a number. Run them in Release:
//   dotnet run -c Release --project tests/MoECompress.Benchmarks -- io [--size 2GB] [--dir /tmp/moe-bench]
//   dotnet run -c Release --project tests/MoECompress.Benchmarks -- calibrate [--layers 4]
return args.Length switch
{
    > 0 when args[0] == "io" => IoBenchmark.Run(args[1..]),
    > 0 when args[0] == IoBenchmark.ChildVerb => IoBenchmark.RunChild(args[1..]),
    > 0 when args[0] == "calibrate" => CalibrationBenchmark.Run(args[1..]),
    > 0 when args[0] == CalibrationBenchmark.ChildVerb => CalibrationBenchmark.RunChild(args[1..]),
    _ => Usage(),
};

static int Usage()
{
    Console.Error.WriteLine("usage: moe-compress-bench io [--size 2GB] [--dir DIR] [--rounds 3] [--cached] [--no-hash] [--keep]");
    Console.Error.WriteLine("       moe-compress-bench calibrate [--layers 4] [--hidden 256] [--samples 32] [--seq-len 256] [--no-hessians]");
    return 2;
}
