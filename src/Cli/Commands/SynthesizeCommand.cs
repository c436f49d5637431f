using MoECompress.Compression.Pipeline;
using System.CommandLine;
using System.Text.Json.Nodes;
using MoECompress.Cli.Rendering;
using MoECompress.Formats.Synthetic;

namespace MoECompress.Cli.Commands;

/// <summary>
/// `moe-compress synthesize &lt;preset&gt; &lt;out&gt;`: writes a small random checkpoint with the tensor names, dtypes,
/// config keys and shard layout of a real model family (for trying the tool, tests and benchmarks).
/// </summary>
internal static class SynthesizeCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var preset = new Argument<string>("preset") { Description = "Layout to imitate: " + string.Join(", ", SyntheticCheckpoint.Presets), HelpName = "preset" };
        preset.AcceptOnlyFromAmong([.. SyntheticCheckpoint.Presets]);
        var output = new Argument<string>("out") { Description = "Folder to create" };
        var seed = new Option<int>("--seed") { Description = "Random seed", DefaultValueFactory = _ => 1 };
        var layers = new Option<int?>("--layers") { Description = "Decoder layers (default: the preset's)" };
        var experts = new Option<int?>("--experts") { Description = "Routed experts per MoE layer (default: the preset's)" };
        var hidden = new Option<int?>("--hidden") { Description = "Hidden size (default: the preset's)" };
        var topK = new Option<int?>("--top-k") { Description = "Experts per token (default: the preset's)" };
        var intermediate = new Option<int?>("--intermediate") { Description = "Routed-expert intermediate size, e.g. 14336 (real Mixtral-8x7B width)" };
        var denseIntermediate = new Option<int?>("--dense-intermediate") { Description = "Dense-MLP intermediate size (dense-first layers)" };
        var heads = new Option<int?>("--heads") { Description = "Attention heads (with --kv-heads and --head-dim: a real model's head layout)" };
        var kvHeads = new Option<int?>("--kv-heads") { Description = "Key/value heads" };
        var headDim = new Option<int?>("--head-dim") { Description = "Size of one attention head" };
        var targetSize = new Option<string?>("--target-size") { Description = "Scale widths up until the weights reach this size, e.g. 2GB" };
        var shardSize = new Option<string?>("--max-shard-size") { Description = "Shard size cap, e.g. 500MB" };
        var overwrite = new Option<bool>("--overwrite") { Description = "Replace the output folder if it exists" };
        var json = new Option<bool>("--json") { Description = "Print the result as JSON" };
        var command = new Command("synthesize", "Write a random checkpoint laid out like a real MoE family")
        {
            preset, output, seed, layers, experts, topK, hidden, intermediate, denseIntermediate, heads, kvHeads, headDim, targetSize, shardSize, overwrite, json,
        };
        command.SetAction((parse, ct) =>
        {
            var options = new SyntheticOptions
            {
                Seed = parse.GetValue(seed),
                Layers = parse.GetValue(layers),
                Experts = parse.GetValue(experts),
                TopK = parse.GetValue(topK),
                Hidden = parse.GetValue(hidden),
                Intermediate = parse.GetValue(intermediate),
                DenseIntermediate = parse.GetValue(denseIntermediate),
                Heads = parse.GetValue(heads),
                KvHeads = parse.GetValue(kvHeads),
                HeadDim = parse.GetValue(headDim),
                TargetBytes = parse.GetValue(targetSize) is { } t ? ByteSize.Parse(t, "--target-size") : null,
                ShardBytes = parse.GetValue(shardSize) is { } s ? ByteSize.Parse(s, "--max-shard-size") : null,
                Overwrite = parse.GetValue(overwrite),
            };
            var info = SyntheticCheckpoint.Write(parse.GetValue(preset)!, parse.GetValue(output)!, options,
                ConsoleProgress.For(stderr), ct);
            if (parse.GetValue(json))
                stdout.WriteLine(ResultJson.Write(new JsonObject
                {
                    ["directory"] = info.Directory, ["preset"] = info.Preset.Name, ["tensors"] = info.TensorCount,
                    ["bytes"] = info.TotalBytes, ["shards"] = info.ShardCount, ["seconds"] = Math.Round(info.Elapsed.TotalSeconds, 2),
                }));
            else
                stdout.WriteLine($"{info.Directory}: {info.Preset.Name} layout, {info.TensorCount} tensors, {ByteSize.Format(info.TotalBytes)} in {info.ShardCount} shard(s), {info.Elapsed.TotalSeconds:0.0} s");
            return Task.FromResult(0);
        });
        return command;
    }
}
