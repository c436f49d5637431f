using MoECompress.Compression.Pipeline;
using System.CommandLine;
using System.Text.Json.Nodes;
using MoECompress.Cli.Rendering;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Families;
using MoECompress.Formats.Safetensors;

namespace MoECompress.Cli.Commands;

/// <summary>
/// `moe-compress reshard &lt;in&gt; &lt;out&gt; [--max-shard-size S]`: validates a checkpoint completely (headers, index,
/// config against tensors, router values) and writes a verified copy, optionally with a new shard size cap, plus a
/// manifest with the SHA-256 of every shard.
/// </summary>
internal static class ReshardCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var input = new Argument<string>("in") { Description = "Input checkpoint folder" };
        var output = new Argument<string>("out") { Description = "Output folder (must not exist unless --overwrite)" };
        var shardSize = new Option<string?>("--max-shard-size") { Description = "New shard size cap, e.g. 5GB (default: keep the input's shards)" };
        var overwrite = new Option<bool>("--overwrite") { Description = "Replace the output folder if it exists" };
        var json = new Option<bool>("--json") { Description = "Print the result as JSON" };
        var command = new Command("reshard", "Validate a checkpoint and write a verified copy, optionally re-sharded")
        {
            input, output, shardSize, overwrite, json,
        };
        command.SetAction((parse, ct) =>
        {
            long? cap = parse.GetValue(shardSize) is { } s ? ByteSize.Parse(s, "--max-shard-size") : null;
            var progress = ConsoleProgress.For(stderr);
            using var model = ModelCheckpoint.Open(parse.GetValue(input)!);
            if (model.Tensors is not SafetensorsCheckpoint tensors)
                throw new MoeCompressException(ErrorKind.Internal, "reshard needs a safetensors checkpoint");
            progress.Report($"validated {model}");
            var writer = new CheckpointWriterOptions
            {
                Overwrite = parse.GetValue(overwrite),
                ManifestOptions = new JsonObject { ["command"] = "reshard", ["input"] = model.Directory, ["max_shard_size"] = cap },
            };
            if (cap is long c) writer = writer with { MaxShardBytes = c };
            var result = CheckpointCopier.Copy(tensors, parse.GetValue(output)!, new CheckpointCopyOptions
            {
                Writer = writer,
                KeepShardLayout = cap is null,
            }, new CopyProgressLines(progress), ct);
            if (parse.GetValue(json))
                stdout.WriteLine(ResultJson.Write(new JsonObject
                {
                    ["destination"] = result.Destination, ["tensors"] = result.TensorCount, ["tensor_bytes"] = result.TensorBytes,
                    ["shards"] = result.Shards.Count, ["seconds"] = Math.Round(result.Elapsed.TotalSeconds, 2),
                }));
            else
                stdout.WriteLine($"{result.Destination}: {result.TensorCount} tensors, {ByteSize.Format(result.TensorBytes)} in {result.Shards.Count} shard(s), {result.Elapsed.TotalSeconds:0.0} s");
            return Task.FromResult(0);
        });
        return command;
    }
}
