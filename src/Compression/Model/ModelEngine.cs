using System.Text.Json.Nodes;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Families;
using MoECompress.Formats.Safetensors;
using TorchSharp;
using static TorchSharp.torch;

namespace MoECompress.Compression.Model;

/// <summary>
/// Entry point of the forward engine: binds a checkpoint's tensors (through <see cref="ITensorSource"/>), its family
/// adapter and its configuration, and loads the pieces of the model on demand — one decoder layer at a time for
/// streaming (<see cref="StreamingRunner"/>), or all of them (<see cref="LoadResident"/>). Loading reads tensors by
/// name; routed experts and routers are located only through the family adapter. Cheap to create: nothing is read
/// until a Load method is called. Compute is float32 (bf16/f16/f8 weights are upcast on load).
/// </summary>
public sealed class ModelEngine
{
    /// <summary>Binds a checkpoint. Throws Infeasible for families without a forward pass, InvalidConfig for bad keys.</summary>
    /// <param name="tensors">The checkpoint's tensors.</param>
    /// <param name="family">The family adapter that recognised the config.</param>
    /// <param name="moe">The family adapter's MoE facts (completed from the tensor names with <see cref="IMoEFamily.ResolveLayout"/>).</param>
    /// <param name="config">config.json.</param>
    /// <param name="configPath">Shown in error messages.</param>
    public ModelEngine(ITensorSource tensors, IMoEFamily family, MoEConfig moe, JsonObject config, string configPath = "config.json")
        : this(tensors, family, FromConfigChecked(family, family.ResolveLayout(moe, tensors.Names), config, configPath))
    {
    }

    /// <summary>Binds an opened checkpoint (see <see cref="ModelCheckpoint.Open"/>). The checkpoint must stay open while the engine is used.</summary>
    public ModelEngine(ModelCheckpoint checkpoint)
        : this(checkpoint.Tensors, checkpoint.Family, checkpoint.MoE, checkpoint.Config, checkpoint.ConfigPath)
    {
    }

    /// <summary>Binds a checkpoint with an engine configuration built (or adjusted) by the caller.</summary>
    public ModelEngine(ITensorSource tensors, IMoEFamily family, EngineConfig config)
    {
        Tensors = tensors;
        Family = family;
        Config = config;
        Rotary = config.CreateRotaryEmbedding();
    }

    /// <summary>
    /// Keep routed-expert weights in bfloat16 after loading (half the memory of a layer's experts; each expert is
    /// upcast to float32 when it runs). Lossless when the checkpoint stores its experts in bf16; other storage types
    /// are rounded to bf16. Default false.
    /// </summary>
    public bool KeepExpertWeightsInBFloat16 { get; init; }

    /// <summary>Dynamic expert skipping applied to every MoE block this engine loads (<c>eval --skip-plan</c>); null for none.</summary>
    public Substitution.ExpertSkipping? Skipping { get; init; }

    public ITensorSource Tensors { get; }
    public IMoEFamily Family { get; }
    public EngineConfig Config { get; }
    public RotaryEmbedding Rotary { get; }
    public MoEConfig MoE => Config.MoE;

    /// <summary>Name of the embedding table tensor ("model.embed_tokens.weight" under the family's module prefix).</summary>
    public string EmbeddingName => MoE.ModelPrefix + "embed_tokens.weight";
    /// <summary>Name of the final norm weight.</summary>
    public string FinalNormName => MoE.ModelPrefix + "norm.weight";
    /// <summary>Name of the output projection.</summary>
    public const string LmHeadName = "lm_head.weight";
    /// <summary>Name of the output projection's bias (Phi-3.5-MoE lm_head_bias).</summary>
    public const string LmHeadBiasName = "lm_head.bias";

    /// <summary>Prefix of a decoder layer's tensor names ("model.layers.{i}.").</summary>
    public string LayerPrefix(int layer) => $"{MoE.ModelPrefix}layers.{layer}.";

    /// <summary>
    /// Throws <see cref="MoeCompressException"/>(Infeasible) when the engine cannot run the model of this config
    /// (MiniCPM-MoE, ...). Data-free commands need not call it.
    /// </summary>
    public static void EnsureSupported(IMoEFamily family, JsonObject config)
    {
        var modelType = EngineConfig.DetectModelType(config);
        if (modelType is null || !EngineConfig.SupportedModelTypes.Contains(modelType))
            throw NotSupported(family.Name, modelType);
    }

    /// <summary>True when <see cref="EnsureSupported"/> would not throw.</summary>
    public static bool IsSupported(JsonObject config) =>
        EngineConfig.DetectModelType(config) is { } t && EngineConfig.SupportedModelTypes.Contains(t);

    internal static MoeCompressException NotSupported(string family, string? modelType) =>
        new(ErrorKind.Infeasible,
            $"forward pass not supported for family {family}{(modelType is null ? "" : $" (model_type '{modelType}')")} yet; " +
            $"data-free commands (inspect, ...) still work; the forward engine runs model types {string.Join(", ", EngineConfig.SupportedModelTypes)}");

    private static EngineConfig FromConfigChecked(IMoEFamily family, MoEConfig moe, JsonObject config, string configPath)
    {
        EnsureSupported(family, config);
        return EngineConfig.FromConfig(config, moe, configPath);
    }

    /// <summary>Loads the token embedding table (kept in its stored dtype).</summary>
    public EmbeddingTable LoadEmbedding()
    {
        if (!Tensors.Contains(EmbeddingName))
            throw new MoeCompressException(ErrorKind.InvalidCheckpoint, $"tensor '{EmbeddingName}' (token embeddings) is missing from the checkpoint");
        var w = Tensors.ToTensor(EmbeddingName).DetachFromDisposeScope();
        if (w.dim() != 2 || w.shape[0] < Config.VocabSize || w.shape[1] != Config.HiddenSize)
        {
            var shape = w.shape;
            w.Dispose();
            throw new MoeCompressException(ErrorKind.InvalidConfig,
                $"tensor '{EmbeddingName}' has shape [{string.Join(", ", shape)}], but config.json implies [{Config.VocabSize}, {Config.HiddenSize}]");
        }
        return new EmbeddingTable(w) { Multiplier = Config.EmbeddingMultiplier };
    }

    /// <summary>Loads the final norm and lm_head (or the embedding table when tied) as float32.</summary>
    public OutputHead LoadHead()
    {
        using var loader = new WeightLoader(Tensors, Config);
        try
        {
            var norm = LoadHiddenNorm(loader, MoE.ModelPrefix + "norm", "final norm");
            var headName = Tensors.Contains(LmHeadName) || !Config.MoE.TieWordEmbeddings ? LmHeadName : EmbeddingName;
            long rows = Config.VocabSize;
            if (Tensors.Contains(headName) && Tensors.GetInfo(headName).Shape is [var stored, _] && stored > rows)
                rows = stored;
            var head = loader.Load(headName, "output projection", rows, Config.HiddenSize);
            var bias = headName == LmHeadName && (Config.LmHeadBias || loader.Has(LmHeadBiasName))
                ? loader.Load(LmHeadBiasName, "output projection bias", rows) : null;
            loader.Commit();
            return new OutputHead(norm, head, bias) { LogitsScaling = Config.LogitsScaling };
        }
        catch
        {
            loader.Abandon();
            throw;
        }
    }

    /// <summary>
    /// Routed-expert weights stored as bfloat16/float16 are held in that type by <see cref="LoadLayer"/> and widened to
    /// float32 per expert as they are used (exact: the forward pass gives the same result as with float32 weights), which
    /// halves the memory of a layer's experts. Weights written into the layer (compressed propagation) are rounded to
    /// that type. Off by default.
    /// </summary>
    public bool HoldExpertsAt16Bit { get; init; }

    /// <summary>Loads decoder layer <paramref name="layer"/> (0-based) as float32 weights (routed experts: see <see cref="HoldExpertsAt16Bit"/>).</summary>
    public DecoderLayer LoadLayer(int layer)
    {
        if (layer < 0 || layer >= Config.NumLayers)
            throw new ArgumentOutOfRangeException(nameof(layer), layer, $"the model has {Config.NumLayers} decoder layers");
        using var loader = new WeightLoader(Tensors, Config, HoldExpertsAt16Bit);
        try
        {
            var p = LayerPrefix(layer);
            var h = Config.HiddenSize;
            var inputNorm = LoadHiddenNorm(loader, p + "input_layernorm", $"layer {layer} input norm");
            var postNorm = LoadHiddenNorm(loader, p + "post_attention_layernorm", $"layer {layer} post-attention norm");
            AttentionBlock attention = Config.Mla is not null ? LoadLatentAttention(loader, layer)
                : Config.IsLinearAttentionLayer(layer) ? LoadGatedDeltaNet(loader, layer)
                : LoadGroupedAttention(loader, layer);
            GatedMlp? mlp = null;
            MoEBlock? moe = null;
            if (Config.MoE.IsMoELayer[layer]) moe = LoadMoE(loader, layer);
            else mlp = LoadDenseMlp(loader, p + "mlp.", Config.DenseIntermediateSize > 0 ? Config.DenseIntermediateSize : null, $"layer {layer} dense MLP");
            loader.Commit();
            return new DecoderLayer(layer, inputNorm, attention, postNorm, mlp, moe) { ResidualMultiplier = Config.ResidualMultiplier };
        }
        catch
        {
            loader.Abandon();
            throw;
        }
    }

    /// <summary>A decoder norm over the hidden size: RMSNorm <c>{prefix}.weight</c>, or LayerNorm with <c>{prefix}.bias</c> too (Phi-3.5-MoE).</summary>
    private INorm LoadHiddenNorm(WeightLoader loader, string prefix, string what)
    {
        long h = Config.HiddenSize;
        if (!Config.UseLayerNorm) return LoadNorm(loader, prefix + ".weight", what, h);
        return new LayerNorm(loader.Load(prefix + ".weight", what, h), loader.Load(prefix + ".bias", what + " bias", h), Config.RmsNormEps);
    }

    /// <summary>An RMSNorm of the decoder (layer, final, q/k norms): 1 + the stored weight for Qwen3-Next's zero-centred norms.</summary>
    private RmsNorm LoadNorm(WeightLoader loader, string name, string what, long size)
    {
        var w = loader.Load(name, what, size);
        if (Config.ZeroCenteredNorms) w = loader.Replace(w, w.Plus(1));
        return new RmsNorm(w, Config.RmsNormEps);
    }

    private LinearWeights LoadLinear(WeightLoader loader, string prefix, string what, long outFeatures, long inFeatures)
    {
        var w = loader.Load(prefix + ".weight", what, outFeatures, inFeatures);
        var b = loader.TryLoad(prefix + ".bias", what + " bias", outFeatures);
        return new LinearWeights(w, b);
    }

    private GroupedQueryAttention LoadGroupedAttention(WeightLoader loader, int layer)
    {
        var c = Config;
        var p = LayerPrefix(layer) + "self_attn.";
        var what = $"layer {layer} attention";
        long h = c.HiddenSize, d = c.HeadDim, nq = c.NumAttentionHeads, nkv = c.NumKeyValueHeads;
        var q = LoadLinear(loader, p + "q_proj", what, nq * d * (c.AttentionOutputGate ? 2 : 1), h);
        var k = LoadLinear(loader, p + "k_proj", what, nkv * d, h);
        var v = LoadLinear(loader, p + "v_proj", what, nkv * d, h);
        var o = LoadLinear(loader, p + "o_proj", what, h, nq * d);
        RmsNorm? qNorm = null, kNorm = null;
        if (loader.Has(p + "q_norm.weight"))
        {
            var size = Tensors.GetInfo(p + "q_norm.weight").ElementCount;
            qNorm = LoadNorm(loader, p + "q_norm.weight", what + " q_norm", size == d ? d : nq * d);
        }
        if (loader.Has(p + "k_norm.weight"))
        {
            var size = Tensors.GetInfo(p + "k_norm.weight").ElementCount;
            kNorm = LoadNorm(loader, p + "k_norm.weight", what + " k_norm", size == d ? d : nkv * d);
        }
        var window = c.SlidingWindowLayers[layer] ? c.SlidingWindow : null;
        var sinks = loader.TryLoad(p + "sinks", what + " sinks", nq);
        return new GroupedQueryAttention(c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim, q, k, v, o, c.AttentionScale, window, qNorm, kNorm, c.ClipQkv, sinks,
            c.AttentionOutputGate);
    }

    /// <summary>
    /// Gated DeltaNet of a linear_attention layer: Qwen3.5's split projections (in_proj_qkv, in_proj_z, in_proj_b,
    /// in_proj_a) or Qwen3-Next's fused, key-head-grouped ones (in_proj_qkvz, in_proj_ba), reordered on load.
    /// </summary>
    private GatedDeltaNet LoadGatedDeltaNet(WeightLoader loader, int layer)
    {
        var c = Config;
        var s = c.LinearAttention!;
        var p = LayerPrefix(layer) + "linear_attn.";
        var what = $"layer {layer} linear attention";
        long h = c.HiddenSize;
        LinearWeights qkv, z, b, a;
        if (loader.Has(p + "in_proj_qkvz.weight"))
        {
            var qkvz = loader.Load(p + "in_proj_qkvz.weight", what + " in_proj_qkvz", 2L * s.KeyDim + 2L * s.ValueDim, h);
            var ba = loader.Load(p + "in_proj_ba.weight", what + " in_proj_ba", 2L * s.NumValueHeads, h);
            var split = GatedDeltaNet.FromGroupedProjections(s, qkvz, ba);
            qkv = new LinearWeights(loader.Replace(qkvz, split.Qkv));
            b = new LinearWeights(loader.Replace(ba, split.B));
            z = new LinearWeights(loader.Adopt(split.Z));
            a = new LinearWeights(loader.Adopt(split.A));
        }
        else
        {
            qkv = LoadLinear(loader, p + "in_proj_qkv", what + " in_proj_qkv", s.ConvDim, h);
            z = LoadLinear(loader, p + "in_proj_z", what + " in_proj_z", s.ValueDim, h);
            b = LoadLinear(loader, p + "in_proj_b", what + " in_proj_b", s.NumValueHeads, h);
            a = LoadLinear(loader, p + "in_proj_a", what + " in_proj_a", s.NumValueHeads, h);
        }
        var conv = loader.Load(p + "conv1d.weight", what + " conv1d", s.ConvDim, 1, s.ConvKernel);
        conv = loader.Replace(conv, conv.view(s.ConvDim, s.ConvKernel).clone());
        var aLog = loader.Load(p + "A_log", what + " A_log", s.NumValueHeads);
        var dtBias = loader.Load(p + "dt_bias", what + " dt_bias", s.NumValueHeads);
        var norm = loader.Load(p + "norm.weight", what + " norm", s.ValueHeadDim);
        var o = LoadLinear(loader, p + "out_proj", what + " out_proj", h, s.ValueDim);
        return new GatedDeltaNet(s, qkv, z, b, a, conv, aLog, dtBias, norm, c.RmsNormEps, o);
    }

    private MultiHeadLatentAttention LoadLatentAttention(WeightLoader loader, int layer)
    {
        const double latentNormEps = 1e-6;
        var c = Config;
        var m = c.Mla!;
        var p = LayerPrefix(layer) + "self_attn.";
        var what = $"layer {layer} attention";
        long h = c.HiddenSize, n = c.NumAttentionHeads;
        LinearWeights? qProj = null, qA = null, qB = null;
        RmsNorm? qANorm = null;
        if (m.QLoraRank is { } rank)
        {
            qA = LoadLinear(loader, p + "q_a_proj", what, rank, h);
            qANorm = new RmsNorm(loader.Load(p + "q_a_layernorm.weight", what + " q_a_layernorm", rank), latentNormEps);
            qB = LoadLinear(loader, p + "q_b_proj", what, n * m.QkHeadDim, rank);
        }
        else
            qProj = LoadLinear(loader, p + "q_proj", what, n * m.QkHeadDim, h);
        var kvA = LoadLinear(loader, p + "kv_a_proj_with_mqa", what, m.KvLoraRank + m.QkRopeHeadDim, h);
        var kvANorm = new RmsNorm(loader.Load(p + "kv_a_layernorm.weight", what + " kv_a_layernorm", m.KvLoraRank), latentNormEps);
        var kvB = LoadLinear(loader, p + "kv_b_proj", what, n * (m.QkNopeHeadDim + m.VHeadDim), m.KvLoraRank);
        var o = LoadLinear(loader, p + "o_proj", what, h, n * m.VHeadDim);
        return new MultiHeadLatentAttention(m, c.NumAttentionHeads, c.AttentionScale, c.RopeInterleaved, qProj, qA, qANorm, qB, kvA, kvANorm, kvB, o);
    }

    /// <summary>gate_proj/up_proj/down_proj under <paramref name="prefix"/>; the intermediate size is read from the tensors when not given.</summary>
    private GatedMlp LoadDenseMlp(WeightLoader loader, string prefix, int? intermediate, string what)
    {
        long h = Config.HiddenSize;
        long inter = intermediate ?? (loader.Has(prefix + "gate_proj.weight") ? Tensors.GetInfo(prefix + "gate_proj.weight").Shape[0] : 0);
        var gate = loader.Load(prefix + "gate_proj.weight", what + " gate_proj", inter, h);
        var up = loader.Load(prefix + "up_proj.weight", what + " up_proj", inter, h);
        var down = loader.Load(prefix + "down_proj.weight", what + " down_proj", h, inter);
        return new GatedMlp(gate, up, down, Config.HiddenAct);
    }

    private MoEBlock LoadMoE(WeightLoader loader, int layer)
    {
        var moe = Config.MoE;
        var spec = Config.Router;
        long h = Config.HiddenSize, inter = moe.ExpertIntermediateSize;
        var what = $"layer {layer} router";
        var routerWeight = loader.Load(Family.RouterWeightName(layer, moe), what, spec.NumExperts, h);
        Tensor? routerBias = null, correction = null;
        if (Family.RouterBiasName(layer, moe) is { } rb && (moe.HasRouterBias || loader.Has(rb)))
            routerBias = loader.Load(rb, what + " bias", spec.NumExperts);
        if (spec.UseCorrectionBias)
        {
            var cb = Family.CorrectionBiasName(layer, moe)
                     ?? throw new MoeCompressException(ErrorKind.InvalidConfig, $"family {Family.Name} names no e_score_correction_bias for layer {layer}, but routing needs one");
            correction = loader.Load(cb, $"layer {layer} e_score_correction_bias", spec.NumExperts);
        }
        var router = new MoERouter(spec, routerWeight, routerBias, correction);

        var experts = new List<GatedMlp>(moe.NumExperts);
        for (var e = 0; e < moe.NumExperts; e++)
        {
            var ew = $"layer {layer} expert {e}";
            var (gate, gb) = loader.LoadExpert(Family, moe, layer, e, ExpertProjection.Gate, ew + " gate_proj", new[] { inter, h });
            var (up, ub) = loader.LoadExpert(Family, moe, layer, e, ExpertProjection.Up, ew + " up_proj", new[] { inter, h });
            var (down, db) = loader.LoadExpert(Family, moe, layer, e, ExpertProjection.Down, ew + " down_proj", new[] { h, inter });
            if (KeepExpertWeightsInBFloat16)
                (gate, up, down) = (loader.Replace(gate, gate.to(ScalarType.BFloat16)), loader.Replace(up, up.to(ScalarType.BFloat16)),
                    loader.Replace(down, down.to(ScalarType.BFloat16)));
            experts.Add(new GatedMlp(gate, up, down, Config.ExpertActivation, gb, ub, db));
        }

        var p = LayerPrefix(layer) + "mlp.";
        GatedMlp? shared = null;
        Tensor? sharedGate = null;
        var sharedPrefix = loader.Has(p + "shared_expert.gate_proj.weight") ? p + "shared_expert."
            : loader.Has(p + "shared_experts.gate_proj.weight") ? p + "shared_experts." : null;
        if (sharedPrefix is not null)
        {
            shared = LoadDenseMlp(loader, sharedPrefix,
                moe.SharedExpertIntermediateSize > 0 ? moe.SharedExpertIntermediateSize : null, $"layer {layer} shared expert");
            if (loader.Has(p + "shared_expert_gate.weight"))
                sharedGate = loader.Load(p + "shared_expert_gate.weight", $"layer {layer} shared expert gate", 1, h);
            else if (moe.HasSharedExpertGate)
                throw new MoeCompressException(ErrorKind.InvalidCheckpoint, $"tensor '{p}shared_expert_gate.weight' (layer {layer} shared expert gate) is missing from the checkpoint");
        }
        else if (loader.Has(LayerPrefix(layer) + GraniteSharedMlp + "input_linear.weight") || Config.ModelType == "granitemoeshared" && moe.SharedExpertIntermediateSize > 0)
            shared = LoadGraniteSharedMlp(loader, layer);
        else if (moe.NumSharedExperts > 0 || moe.SharedExpertIntermediateSize > 0)
            throw new MoeCompressException(ErrorKind.InvalidCheckpoint,
                $"layer {layer}: config declares shared experts but neither '{p}shared_expert.gate_proj.weight' nor '{p}shared_experts.gate_proj.weight' exists");
        return new MoEBlock(layer, router, experts, shared, sharedGate)
        {
            CompressedExperts = Config.CompressedExperts is { } ce ? LoadCompressedExperts(loader, layer, ce.Aux) : null,
            SkipRule = Skipping?.RuleFor(layer),
        };
    }

    private const string GraniteSharedMlp = "shared_mlp.";

    /// <summary>GraniteMoeShared's shared_mlp: input_linear [2S, H] (gate rows, then up rows) and output_linear [H, S].</summary>
    private GatedMlp LoadGraniteSharedMlp(WeightLoader loader, int layer)
    {
        var p = LayerPrefix(layer) + GraniteSharedMlp;
        var what = $"layer {layer} shared MLP";
        long h = Config.HiddenSize, s = MoE.SharedExpertIntermediateSize;
        if (s <= 0 && loader.Has(p + "input_linear.weight"))
            s = Tensors.GetInfo(p + "input_linear.weight").Shape[0] / 2;
        var (gate, up) = loader.LoadHalves(p + "input_linear.weight", what + " input_linear", s, h);
        var down = loader.Load(p + "output_linear.weight", what + " output_linear", h, s);
        return new GatedMlp(gate, up, down, Config.HiddenAct);
    }

    /// <summary>The three vector tensors of a substituted checkpoint's layer, named by the family adapter.</summary>
    private Substitution.CompressedExpertVectors LoadCompressedExperts(WeightLoader loader, int layer, int aux)
    {
        var (c1, c2, c3) = CompressedExpertsConfig.TensorNames(Family, layer, MoE);
        long e = MoE.NumExperts, h = Config.HiddenSize, i = MoE.ExpertIntermediateSize;
        var what = $"layer {layer} compressed experts (config.json {CompressedExpertsConfig.Key})";
        return new Substitution.CompressedExpertVectors(loader.Load(c1, what, e, h), loader.Load(c2, what, e, i), loader.Load(c3, what, e, h), aux);
    }

    /// <summary>Loads every layer, the embedding and the head: the whole model in memory (small models and tests).</summary>
    public ResidentModel LoadResident(CancellationToken cancellationToken = default)
    {
        var layers = new List<DecoderLayer>();
        EmbeddingTable? embedding = null;
        OutputHead? head = null;
        try
        {
            embedding = LoadEmbedding();
            for (var l = 0; l < Config.NumLayers; l++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                layers.Add(LoadLayer(l));
            }
            head = LoadHead();
            return new ResidentModel(this, embedding, layers, head);
        }
        catch
        {
            embedding?.Dispose();
            foreach (var l in layers) l.Dispose();
            head?.Dispose();
            throw;
        }
    }

    /// <summary>A runner that streams sequences through the model one layer at a time.</summary>
    public StreamingRunner CreateRunner(StreamingOptions? options = null) => new(this, options ?? new StreamingOptions());
}
