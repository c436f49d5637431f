using System.Globalization;
using System.Text.Json.Serialization;

namespace MoECompress.Compression.Training;

/// <summary>The architecture a reference model is trained and exported in.</summary>
public enum ReferenceModelLayout
{
    /// <summary>MixtralForCausalLM: GQA attention, every layer a softmax top-k MoE, Switch load-balancing loss.</summary>
    Mixtral,

    /// <summary>
    /// DeepseekV3ForCausalLM (the layout of DeepSeek-V3/R1 and Kimi K2): multi-head latent attention with a plain q_proj,
    /// the first <see cref="ReferenceModelOptions.FirstDenseLayers"/> layers dense, then fine-grained routed experts plus
    /// shared experts, sigmoid routing with the auxiliary-loss-free e_score_correction_bias.
    /// </summary>
    DeepseekV3,
}

/// <summary>
/// Everything that determines a reference-model training run (the defaults are the recipe of the bundled
/// models/moe-demo): architecture (<see cref="Layout"/>: a Mixtral-style sparse MoE by default), data,
/// optimisation and reproducibility. Two runs with equal options, the same data files and the same
/// <see cref="Threads"/> on the same machine and libtorch build produce bit-identical weights.
/// </summary>
public sealed record ReferenceModelOptions
{
    /// <summary>Folder holding one <c>&lt;domain&gt;.txt</c> training file per domain (e.g. calibration/train).</summary>
    public required string TrainDataDirectory { get; init; }

    /// <summary>SentencePiece tokenizer.model (the Mistral 32k vocabulary); it is also copied into the output.</summary>
    public required string TokenizerModelPath { get; init; }

    /// <summary>Folder the Hugging Face checkpoint is written to (must not exist; it appears complete or not at all).</summary>
    public required string OutputDirectory { get; init; }

    /// <summary>Domains to train on (file stems in <see cref="TrainDataDirectory"/>); empty = every *.txt there, sorted.</summary>
    public IReadOnlyList<string> Domains { get; init; } = [];

    /// <summary>Domains whose windows appear this many times in every epoch (e.g. small domains oversampled next to a
    /// large corpus); the others appear once. Empty: every window once.</summary>
    public IReadOnlyDictionary<string, int> DomainRepeats { get; init; } = new Dictionary<string, int>();

    /// <summary>Architecture. <see cref="FirstDenseLayers"/> … <see cref="SequenceAuxLossCoefficient"/> apply to
    /// <see cref="ReferenceModelLayout.DeepseekV3"/> only, <see cref="KeyValueHeads"/> and <see cref="AuxLossCoefficient"/> to Mixtral only.</summary>
    public ReferenceModelLayout Layout { get; init; } = ReferenceModelLayout.Mixtral;

    public int Layers { get; init; } = 4;
    public int HiddenSize { get; init; } = 192;
    /// <summary>Intermediate size of one routed expert (DeepSeek-V3: moe_intermediate_size).</summary>
    public int IntermediateSize { get; init; } = 384;
    public int Experts { get; init; } = 8;
    public int TopK { get; init; } = 2;
    public int AttentionHeads { get; init; } = 6;
    public int KeyValueHeads { get; init; } = 2;
    public bool TieWordEmbeddings { get; init; } = true;

    // DeepSeek-V3 layout (ignored by Mixtral; not recorded for it in the manifest or the resume fingerprint).

    /// <summary>Leading dense layers (first_k_dense_replace).</summary>
    public int FirstDenseLayers { get; init; } = 1;
    /// <summary>Intermediate size of the dense layers' MLP (intermediate_size).</summary>
    public int DenseIntermediateSize { get; init; } = 512;
    /// <summary>Shared experts per MoE layer (n_shared_experts), fused into one MLP of SharedExperts × IntermediateSize.</summary>
    public int SharedExperts { get; init; } = 1;
    /// <summary>Latent rank of keys and values (kv_lora_rank). Queries use a plain q_proj (q_lora_rank null).</summary>
    public int KvLoraRank { get; init; } = 128;
    /// <summary>Per-head query/key dimensions without (qk_nope_head_dim) and with rotary embedding (qk_rope_head_dim).</summary>
    public int QkNopeHeadDim { get; init; } = 32;
    public int QkRopeHeadDim { get; init; } = 16;
    /// <summary>Per-head value dimension (v_head_dim).</summary>
    public int VHeadDim { get; init; } = 32;
    /// <summary>Factor on the renormalised routing weights (routed_scaling_factor).</summary>
    public double RoutedScalingFactor { get; init; } = 2.5;
    /// <summary>
    /// γ of DeepSeek-V3's auxiliary-loss-free balancing: after each optimiser step every expert's e_score_correction_bias
    /// moves by γ·sign(mean load − its load) (load = top-k selections in the step's batch); 0 disables it.
    /// </summary>
    public double BiasUpdateRate { get; init; } = 1e-3;
    /// <summary>Coefficient α of DeepSeek-V3's sequence-wise balance loss (replaces <see cref="AuxLossCoefficient"/>); 0 disables it.</summary>
    public double SequenceAuxLossCoefficient { get; init; } = 1e-4;
    public double RopeTheta { get; init; } = 10000.0;
    public double RmsNormEps { get; init; } = 1e-5;

    /// <summary>Tokens per training sequence (also written as max_position_embeddings).</summary>
    public int SequenceLength { get; init; } = 256;
    public int BatchSize { get; init; } = 8;
    /// <summary>Fixed number of optimiser steps (the run length is a step count, never a time limit).</summary>
    public int Steps { get; init; } = 1200;

    public double LearningRate { get; init; } = 3e-3;
    public double MinLearningRate { get; init; } = 3e-4;
    public int WarmupSteps { get; init; } = 50;
    public double WeightDecay { get; init; } = 0.1;
    public double Beta1 { get; init; } = 0.9;
    public double Beta2 { get; init; } = 0.95;
    public double GradientClipNorm { get; init; } = 1.0;
    /// <summary>Standard deviation of the normal initialisation (HF initializer_range).</summary>
    public double InitializerRange { get; init; } = 0.02;

    /// <summary>Coefficient of the load-balancing loss E·Σ f_i·P_i (1 when perfectly balanced); Mixtral layout only.</summary>
    public double AuxLossCoefficient { get; init; } = 0.02;
    /// <summary>Coefficient of the router z-loss mean(logsumexp(router logits)²); 0 disables it.</summary>
    public double RouterZLossCoefficient { get; init; } = 0.001;

    /// <summary>
    /// Matrix products in bfloat16 (fp32 master weights, fp32 router/norms/softmax/loss). Faster only on CPUs with native
    /// bf16 arithmetic (AVX512-BF16 / AMX); on AVX2-only CPUs it is slower, hence off by default.
    /// </summary>
    public bool Bf16Matmuls { get; init; } = false;

    public long Seed { get; init; } = 1234;
    /// <summary>
    /// libtorch intra-op threads (process-wide); 0 leaves the process setting unchanged. On a machine shared with other
    /// work, 1 is much faster than 2: OpenMP threads spin at barriers while their partner is descheduled.
    /// </summary>
    public int Threads { get; init; } = 0;

    /// <summary>Write a loss row every this many steps (training-loss.csv in the output folder).</summary>
    public int LogEvery { get; init; } = 10;

    /// <summary>Optional file to which the fp32 training state (TorchSharp module format) is saved after training,
    /// for resuming evaluation or re-export without retraining; null = not saved.</summary>
    public string? TrainingStatePath { get; init; }

    /// <summary>
    /// Write a training checkpoint every this many steps; 0 = no step-based checkpoints. Checkpointing does not change
    /// the result, so it is not part of the options recorded in the manifest (nor are the other checkpoint settings).
    /// </summary>
    [JsonIgnore]
    public int CheckpointEvery { get; init; } = 0;

    /// <summary>Also write a checkpoint once this many minutes of wall time have passed since the last one; 0 = off.</summary>
    [JsonIgnore]
    public double CheckpointMinutes { get; init; } = 5.0;

    /// <summary>Folder of the training checkpoints; null = <c>&lt;OutputDirectory&gt;.training</c> beside the output.</summary>
    [JsonIgnore]
    public string? CheckpointDirectory { get; init; }

    /// <summary>Continue from the latest checkpoint in <see cref="CheckpointFolder"/> (which must hold one, written with
    /// the same options); without it an existing checkpoint folder is an error.</summary>
    [JsonIgnore]
    public bool Resume { get; init; }

    /// <summary>The checkpoint folder this run uses: <see cref="CheckpointDirectory"/>, or <c>&lt;OutputDirectory&gt;.training</c>.</summary>
    public string CheckpointFolder() =>
        CheckpointDirectory ?? Path.TrimEndingDirectorySeparator(Path.GetFullPath(OutputDirectory)) + ".training";

    /// <summary>
    /// The options a resumed run must share with the run that wrote the checkpoint (everything that changes the result,
    /// keyed by the CLI option name where there is one), as invariant strings. <paramref name="effectiveThreads"/> is the
    /// libtorch thread count the run uses (it changes the last bits of the result).
    /// </summary>
    public IReadOnlyList<KeyValuePair<string, string>> ResumeFingerprint(int effectiveThreads)
    {
        static string D(double v) => v.ToString("R", CultureInfo.InvariantCulture);
        static string I(long v) => v.ToString(CultureInfo.InvariantCulture);
        List<KeyValuePair<string, string>> keys =
        [
            new("--layers", I(Layers)), new("--hidden", I(HiddenSize)), new("--intermediate", I(IntermediateSize)),
            new("--experts", I(Experts)), new("--top-k", I(TopK)), new("--heads", I(AttentionHeads)), new("--kv-heads", I(KeyValueHeads)),
            new("TieWordEmbeddings", TieWordEmbeddings ? "true" : "false"), new("RopeTheta", D(RopeTheta)), new("RmsNormEps", D(RmsNormEps)),
            new("--seq-len", I(SequenceLength)), new("--batch", I(BatchSize)), new("--steps", I(Steps)),
            new("--lr", D(LearningRate)), new("--min-lr", D(MinLearningRate)), new("--warmup", I(WarmupSteps)),
            new("--weight-decay", D(WeightDecay)), new("Beta1", D(Beta1)), new("Beta2", D(Beta2)),
            new("GradientClipNorm", D(GradientClipNorm)), new("InitializerRange", D(InitializerRange)),
            new("--aux-loss", D(AuxLossCoefficient)), new("--z-loss", D(RouterZLossCoefficient)),
            new("--bf16", Bf16Matmuls ? "true" : "false"), new("--seed", I(Seed)), new("--threads", I(effectiveThreads)),
            new("--log-every", I(LogEvery)), new("Domains", string.Join(",", Domains)), new("ChunkCharacters", I(ChunkCharacters)),
        ];
        if (DomainRepeats.Count > 0)
            keys.Add(new("--repeat", string.Join(",", DomainRepeats.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => $"{kv.Key}={kv.Value}"))));
        if (Layout == ReferenceModelLayout.DeepseekV3)
            keys.AddRange(
            [
                new("--layout", LayoutName(Layout)), new("--dense-layers", I(FirstDenseLayers)), new("--dense-intermediate", I(DenseIntermediateSize)),
                new("--shared-experts", I(SharedExperts)), new("--kv-lora-rank", I(KvLoraRank)), new("--qk-nope-dim", I(QkNopeHeadDim)),
                new("--qk-rope-dim", I(QkRopeHeadDim)), new("--v-head-dim", I(VHeadDim)), new("--routed-scaling", D(RoutedScalingFactor)),
                new("--bias-update-rate", D(BiasUpdateRate)), new("--seq-aux-loss", D(SequenceAuxLossCoefficient)),
            ]);
        return keys;
    }

    /// <summary>The CLI spelling of a layout (mixtral, deepseek-v3).</summary>
    public static string LayoutName(ReferenceModelLayout layout) => layout switch
    {
        ReferenceModelLayout.Mixtral => "mixtral",
        ReferenceModelLayout.DeepseekV3 => "deepseek-v3",
        _ => throw new ArgumentOutOfRangeException(nameof(layout), layout, null),
    };

    private static readonly string[] DeepseekV3OnlyProperties =
    [
        nameof(Layout), nameof(FirstDenseLayers), nameof(DenseIntermediateSize), nameof(SharedExperts), nameof(KvLoraRank),
        nameof(QkNopeHeadDim), nameof(QkRopeHeadDim), nameof(VHeadDim), nameof(RoutedScalingFactor), nameof(BiasUpdateRate),
        nameof(SequenceAuxLossCoefficient),
    ];

    /// <summary>
    /// The options as recorded in the exported checkpoint's manifest: every result-determining property; the DeepSeek-V3
    /// ones only for that layout (so a Mixtral run records exactly what it did before the layout existed), the layout by name.
    /// </summary>
    public System.Text.Json.Nodes.JsonObject ManifestJson()
    {
        var node = System.Text.Json.JsonSerializer.SerializeToNode(this)!.AsObject();
        if (Layout == ReferenceModelLayout.Mixtral)
            foreach (var key in DeepseekV3OnlyProperties) node.Remove(key);
        else
            node[nameof(Layout)] = LayoutName(Layout);
        return node;
    }

    /// <summary>Longest text chunk (characters, cut at line ends) tokenized as one document with a BOS in front.</summary>
    public int ChunkCharacters { get; init; } = 2000;

    /// <summary>Throws <see cref="Formats.Errors.MoeCompressException"/> naming the first invalid option.</summary>
    public void Validate()
    {
        static void Require(bool ok, string message)
        {
            if (!ok) throw new MoECompress.Formats.Errors.MoeCompressException(MoECompress.Formats.Errors.ErrorKind.Usage, message);
        }
        Require(Layers >= 1, $"--layers must be ≥ 1 (got {Layers})");
        Require(HiddenSize >= 8, $"--hidden must be ≥ 8 (got {HiddenSize})");
        Require(IntermediateSize >= 1, $"--intermediate must be ≥ 1 (got {IntermediateSize})");
        Require(Experts >= 1, $"--experts must be ≥ 1 (got {Experts})");
        Require(TopK >= 1 && TopK <= Experts, $"--top-k must be between 1 and --experts ({Experts}) (got {TopK})");
        Require(Enum.IsDefined(Layout), $"--layout {Layout} is not a layout (mixtral, deepseek-v3)");
        if (Layout == ReferenceModelLayout.Mixtral)
        {
            Require(AttentionHeads >= 1 && HiddenSize % AttentionHeads == 0, $"--heads ({AttentionHeads}) must divide --hidden ({HiddenSize})");
            Require((HiddenSize / AttentionHeads) % 2 == 0, $"head size hidden/heads = {HiddenSize / AttentionHeads} must be even for rotary embeddings");
            Require(KeyValueHeads >= 1 && AttentionHeads % KeyValueHeads == 0, $"--kv-heads ({KeyValueHeads}) must divide --heads ({AttentionHeads})");
        }
        else
        {
            Require(AttentionHeads >= 1, $"--heads must be ≥ 1 (got {AttentionHeads})");
            Require(FirstDenseLayers >= 0 && FirstDenseLayers < Layers,
                $"--dense-layers must be between 0 and --layers − 1 ({Layers - 1}) so that a MoE layer remains (got {FirstDenseLayers})");
            Require(FirstDenseLayers == 0 || DenseIntermediateSize >= 1, $"--dense-intermediate must be ≥ 1 (got {DenseIntermediateSize})");
            Require(SharedExperts >= 0, $"--shared-experts must be ≥ 0 (got {SharedExperts})");
            Require(KvLoraRank >= 1, $"--kv-lora-rank must be ≥ 1 (got {KvLoraRank})");
            Require(QkNopeHeadDim >= 0, $"--qk-nope-dim must be ≥ 0 (got {QkNopeHeadDim})");
            Require(QkRopeHeadDim >= 2 && QkRopeHeadDim % 2 == 0, $"--qk-rope-dim must be a positive even number (got {QkRopeHeadDim})");
            Require(VHeadDim >= 1, $"--v-head-dim must be ≥ 1 (got {VHeadDim})");
            Require(RoutedScalingFactor > 0 && double.IsFinite(RoutedScalingFactor), $"--routed-scaling must be > 0 (got {RoutedScalingFactor})");
            Require(BiasUpdateRate >= 0 && double.IsFinite(BiasUpdateRate), $"--bias-update-rate must be ≥ 0 (got {BiasUpdateRate})");
            Require(SequenceAuxLossCoefficient >= 0 && double.IsFinite(SequenceAuxLossCoefficient), $"--seq-aux-loss must be ≥ 0 (got {SequenceAuxLossCoefficient})");
        }
        Require(SequenceLength >= 2, $"--seq-len must be ≥ 2 (got {SequenceLength})");
        Require(BatchSize >= 1, $"--batch must be ≥ 1 (got {BatchSize})");
        Require(Steps >= 1, $"--steps must be ≥ 1 (got {Steps})");
        Require(WarmupSteps >= 0, $"--warmup must be ≥ 0 (got {WarmupSteps})");
        Require(LearningRate > 0 && MinLearningRate >= 0 && MinLearningRate <= LearningRate, $"--lr ({LearningRate}) must be > 0 and ≥ --min-lr ({MinLearningRate}) ≥ 0");
        Require(WeightDecay >= 0, $"--weight-decay must be ≥ 0 (got {WeightDecay})");
        Require(AuxLossCoefficient >= 0, $"--aux-loss must be ≥ 0 (got {AuxLossCoefficient})");
        Require(RouterZLossCoefficient >= 0, $"--z-loss must be ≥ 0 (got {RouterZLossCoefficient})");
        Require(Threads >= 0, $"--threads must be ≥ 0 (got {Threads})");
        Require(LogEvery >= 1, $"--log-every must be ≥ 1 (got {LogEvery})");
        Require(CheckpointEvery >= 0, $"--checkpoint-every must be ≥ 0 (got {CheckpointEvery})");
        Require(CheckpointMinutes >= 0 && double.IsFinite(CheckpointMinutes), $"--checkpoint-minutes must be ≥ 0 (got {CheckpointMinutes})");
        Require(ChunkCharacters >= 16, $"chunk size must be ≥ 16 characters (got {ChunkCharacters})");
        Require(File.Exists(TokenizerModelPath), $"tokenizer model '{TokenizerModelPath}' does not exist");
        Require(Directory.Exists(TrainDataDirectory), $"training data folder '{TrainDataDirectory}' does not exist");
    }
}
