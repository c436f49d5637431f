using System.CommandLine;
using System.Text.Json.Nodes;
using MoECompress.Cli.Rendering;
using MoECompress.Compression.Training;

namespace MoECompress.Cli.Commands;

/// <summary>
/// `moe-compress train-reference`: the deterministic training run that produced the bundled demo model
/// (models/moe-demo). Options map one to one onto <see cref="ReferenceModelOptions"/>; defaults are the demo model's.
/// </summary>
internal static class TrainReferenceCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var d = new ReferenceModelOptions { TrainDataDirectory = "", TokenizerModelPath = "", OutputDirectory = "" };
        var trainData = new Option<string>("--train-data") { Description = "Folder of <domain>.txt training files", Required = true };
        var tokenizer = new Option<string>("--tokenizer") { Description = "SentencePiece tokenizer.model", Required = true };
        var output = new Option<string>("--output") { Description = "Folder to create for the trained checkpoint", Required = true };
        var layout = new Option<string>("--layout")
        {
            Description = "Architecture: mixtral (MixtralForCausalLM, the default) or deepseek-v3 (DeepseekV3ForCausalLM: MLA, dense first " +
                          "layers, fine-grained routed + shared experts, sigmoid routing balanced by e_score_correction_bias updates)",
            DefaultValueFactory = _ => "mixtral",
        };
        layout.AcceptOnlyFromAmong("mixtral", "deepseek-v3");
        var layers = Int("--layers", "Decoder layers", d.Layers);
        var hidden = Int("--hidden", "Hidden size", d.HiddenSize);
        var intermediate = Int("--intermediate", "Expert intermediate size (deepseek-v3: routed expert width, moe_intermediate_size)", d.IntermediateSize);
        var experts = Int("--experts", "Experts per layer", d.Experts);
        var topK = Int("--top-k", "Experts per token", d.TopK);
        var heads = Int("--heads", "Attention heads", d.AttentionHeads);
        var kvHeads = Int("--kv-heads", "Key/value heads (mixtral)", d.KeyValueHeads);
        var denseLayers = Int("--dense-layers", "deepseek-v3: leading dense layers (first_k_dense_replace)", d.FirstDenseLayers);
        var denseIntermediate = Int("--dense-intermediate", "deepseek-v3: intermediate size of the dense layers", d.DenseIntermediateSize);
        var sharedExperts = Int("--shared-experts", "deepseek-v3: shared experts per MoE layer", d.SharedExperts);
        var kvLoraRank = Int("--kv-lora-rank", "deepseek-v3: latent key/value rank (queries use a plain q_proj)", d.KvLoraRank);
        var qkNope = Int("--qk-nope-dim", "deepseek-v3: per-head query/key width without rotary embedding", d.QkNopeHeadDim);
        var qkRope = Int("--qk-rope-dim", "deepseek-v3: per-head query/key width with rotary embedding", d.QkRopeHeadDim);
        var vHead = Int("--v-head-dim", "deepseek-v3: per-head value width", d.VHeadDim);
        var routedScaling = Double("--routed-scaling", "deepseek-v3: routed_scaling_factor on the renormalised routing weights", d.RoutedScalingFactor);
        var biasUpdate = Double("--bias-update-rate", "deepseek-v3: γ of the auxiliary-loss-free balancing (bias += γ·sign(mean load − load) per step; 0 = off)", d.BiasUpdateRate);
        var seqAux = Double("--seq-aux-loss", "deepseek-v3: sequence-wise balance loss coefficient (0 = off)", d.SequenceAuxLossCoefficient);
        var seqLen = Int("--seq-len", "Training window in tokens", d.SequenceLength);
        var batch = Int("--batch", "Windows per step", d.BatchSize);
        var steps = Int("--steps", "Optimiser steps (fixed: the run is deterministic)", d.Steps);
        var warmup = Int("--warmup", "Warm-up steps", d.WarmupSteps);
        var lr = Double("--lr", "Peak learning rate", d.LearningRate);
        var minLr = Double("--min-lr", "Final learning rate (cosine decay)", d.MinLearningRate);
        var weightDecay = Double("--weight-decay", "AdamW decoupled weight decay", d.WeightDecay);
        var auxLoss = Double("--aux-loss", "Load-balancing loss coefficient (mixtral)", d.AuxLossCoefficient);
        var zLoss = Double("--z-loss", "Router z-loss coefficient", d.RouterZLossCoefficient);
        var bf16 = new Option<bool>("--bf16") { Description = "Matrix products in bf16 (faster where the CPU supports it)" };
        var noBf16 = new Option<bool>("--no-bf16") { Description = "Matrix products in fp32 (the default)" };
        var seed = new Option<long>("--seed") { Description = "Seed of weights and data order", DefaultValueFactory = _ => d.Seed };
        var threads = Int("--threads", "Intra-op threads (0 = libtorch default)", d.Threads);
        var logEvery = Int("--log-every", "Log a loss row every N steps", d.LogEvery);
        var checkpointEvery = Int("--checkpoint-every", "Write a resumable training checkpoint every N steps (0 = only by time)", d.CheckpointEvery);
        var checkpointMinutes = Double("--checkpoint-minutes", "Also write one after M minutes since the last (0 = off)", d.CheckpointMinutes);
        var checkpointDir = new Option<string?>("--checkpoint-dir") { Description = "Folder of the training checkpoints (default: <output>.training)" };
        var resume = new Option<bool>("--resume") { Description = "Continue from the latest checkpoint (same options required)" };
        var repeat = new Option<string?>("--repeat") { Description = "Oversample domains: DOMAIN=N[,DOMAIN=N...] puts each of their windows N times in every epoch" };
        var json = new Option<bool>("--json") { Description = "Print the result as JSON" };
        var command = new Command("train-reference", "Train the small reference MoE (the bundled demo model) from scratch, deterministically")
        {
            trainData, tokenizer, output, layout, layers, hidden, intermediate, experts, topK, heads, kvHeads,
            denseLayers, denseIntermediate, sharedExperts, kvLoraRank, qkNope, qkRope, vHead, routedScaling, biasUpdate, seqAux,
            seqLen, batch, steps,
            warmup, lr, minLr, weightDecay, auxLoss, zLoss, bf16, noBf16, seed, threads, logEvery,
            checkpointEvery, checkpointMinutes, checkpointDir, resume, repeat, json,
        };
        command.SetAction((parse, ct) =>
        {
            if (parse.GetValue(bf16) && parse.GetValue(noBf16))
                throw OptionChecks.Usage("--bf16", "cannot be combined with --no-bf16");
            var deepseek = parse.GetValue(layout) == "deepseek-v3";
            // Options of the other layout are refused rather than silently ignored.
            Option[] otherLayout = deepseek
                ? [kvHeads, auxLoss]
                : [denseLayers, denseIntermediate, sharedExperts, kvLoraRank, qkNope, qkRope, vHead, routedScaling, biasUpdate, seqAux];
            foreach (var option in otherLayout)
                if (parse.GetResult(option) is { Implicit: false })
                    throw OptionChecks.Usage(option.Name, $"does not apply to --layout {parse.GetValue(layout)}");
            var options = new ReferenceModelOptions
            {
                Layout = deepseek ? ReferenceModelLayout.DeepseekV3 : ReferenceModelLayout.Mixtral,
                FirstDenseLayers = parse.GetValue(denseLayers), DenseIntermediateSize = parse.GetValue(denseIntermediate),
                SharedExperts = parse.GetValue(sharedExperts), KvLoraRank = parse.GetValue(kvLoraRank),
                QkNopeHeadDim = parse.GetValue(qkNope), QkRopeHeadDim = parse.GetValue(qkRope), VHeadDim = parse.GetValue(vHead),
                RoutedScalingFactor = parse.GetValue(routedScaling), BiasUpdateRate = parse.GetValue(biasUpdate),
                SequenceAuxLossCoefficient = parse.GetValue(seqAux),
                TrainDataDirectory = parse.GetValue(trainData)!,
                TokenizerModelPath = parse.GetValue(tokenizer)!,
                OutputDirectory = parse.GetValue(output)!,
                Layers = parse.GetValue(layers), HiddenSize = parse.GetValue(hidden), IntermediateSize = parse.GetValue(intermediate),
                Experts = parse.GetValue(experts), TopK = parse.GetValue(topK),
                AttentionHeads = parse.GetValue(heads), KeyValueHeads = parse.GetValue(kvHeads),
                SequenceLength = parse.GetValue(seqLen), BatchSize = parse.GetValue(batch), Steps = parse.GetValue(steps),
                WarmupSteps = parse.GetValue(warmup), LearningRate = parse.GetValue(lr), MinLearningRate = parse.GetValue(minLr),
                WeightDecay = parse.GetValue(weightDecay), AuxLossCoefficient = parse.GetValue(auxLoss),
                RouterZLossCoefficient = parse.GetValue(zLoss), Bf16Matmuls = parse.GetValue(bf16),
                Seed = parse.GetValue(seed), Threads = parse.GetValue(threads), LogEvery = parse.GetValue(logEvery),
                CheckpointEvery = parse.GetValue(checkpointEvery), CheckpointMinutes = parse.GetValue(checkpointMinutes),
                CheckpointDirectory = parse.GetValue(checkpointDir), Resume = parse.GetValue(resume),
                DomainRepeats = ParseRepeats(parse.GetValue(repeat)),
            };
            var lines = ConsoleProgress.For(stderr);
            var result = ReferenceModelTrainer.Train(options, new Progress(lines), ct);
            if (parse.GetValue(json))
                stdout.WriteLine(ResultJson.Write(new JsonObject
                {
                    ["output"] = result.OutputDirectory, ["steps"] = result.Steps, ["tokens_seen"] = result.TokensSeen, ["final_loss"] = result.FinalLoss,
                }));
            else
                stdout.WriteLine($"{result.OutputDirectory}: {result.Steps} steps, {result.TokensSeen:N0} tokens, final loss {result.FinalLoss:0.0000}");
            return Task.FromResult(0);
        });
        return command;
    }

    private static Dictionary<string, int> ParseRepeats(string? value)
    {
        var result = new Dictionary<string, int>(StringComparer.Ordinal);
        if (string.IsNullOrWhiteSpace(value)) return result;
        foreach (var part in value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var eq = part.LastIndexOf('=');
            if (eq <= 0 || !int.TryParse(part[(eq + 1)..], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var n) || n < 1)
                throw OptionChecks.Usage("--repeat", $"'{part}': give DOMAIN=N with N a whole number of at least 1");
            if (!result.TryAdd(part[..eq], n)) throw OptionChecks.Usage("--repeat", $"domain '{part[..eq]}' is given twice");
        }
        return result;
    }

    private static Option<int> Int(string name, string description, int defaultValue) =>
        new(name) { Description = description, DefaultValueFactory = _ => defaultValue };

    private static Option<double> Double(string name, string description, double defaultValue) =>
        new(name) { Description = description, DefaultValueFactory = _ => defaultValue };

    private sealed class Progress(IProgress<string> lines) : IProgress<ReferenceTrainingProgress>
    {
        public void Report(ReferenceTrainingProgress value) => lines.Report(value.Message);
    }
}
