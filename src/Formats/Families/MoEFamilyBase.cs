using System.Text.Json;
using System.Text.Json.Nodes;
using MoECompress.Formats.Errors;

namespace MoECompress.Formats.Families;

/// <summary>
/// What the Llama-style decoder families share: recognition by "architectures"/"model_type", the
/// <c>{prefix}layers.{i}.</c> tensor tree, attention and norm naming, FP8 scale companions, and the classification of
/// the common MoE block layouts (per-expert, v5 fused, shared experts, dense MLP). A family overrides what differs.
/// </summary>
public abstract class MoEFamilyBase : IMoEFamily
{
    public abstract string Name { get; }
    public abstract IReadOnlyList<string> Architectures { get; }

    /// <summary>config.json "model_type" values this family claims (used when "architectures" does not decide).</summary>
    public abstract IReadOnlyList<string> ModelTypes { get; }

    public virtual bool Matches(JsonObject config)
    {
        if (config["architectures"] is JsonArray archs &&
            archs.Any(a => a is JsonValue v && v.GetValueKind() == JsonValueKind.String && Architectures.Contains(v.GetValue<string>())))
            return true;
        var modelType = ModelTypeOf(config);
        return modelType is not null && ModelTypes.Contains(modelType);
    }

    public abstract MoEConfig ReadConfig(JsonObject config, string configPath);

    public virtual MoEConfig ResolveLayout(MoEConfig config, IReadOnlyCollection<string> tensorNames)
    {
        bool fused = false, perExpert = false;
        foreach (var name in tensorNames)
        {
            var role = Classify(name, config);
            if (role.Role != TensorRole.RoutedExpert || role.IsBias || role.QuantScale) continue;
            if (role.Fused) fused = true; else perExpert = true;
        }
        if (fused && !perExpert && !config.FusedExperts) return config with { FusedExperts = true };
        if (perExpert && !fused && config.FusedExperts) return config with { FusedExperts = false };
        return config;
    }

    public TensorRoleInfo Classify(string tensorName, MoEConfig config)
    {
        // Quantization companions carry the role of the weight they scale: FP8 block scales (DeepSeek-V3/R1 releases,
        // "<name>.weight_scale_inv") and per-tensor scales ("<name>.weight_scale", compressed-tensors).
        foreach (var suffix in QuantScaleSuffixes)
        {
            if (!tensorName.EndsWith(suffix, StringComparison.Ordinal)) continue;
            var baseRole = ClassifyName(tensorName[..^suffix.Length] + ".weight", config);
            return baseRole.Role == TensorRole.Other ? baseRole : baseRole with { QuantScale = true, IsBias = false };
        }
        return ClassifyName(tensorName, config);
    }

    private static readonly string[] QuantScaleSuffixes = [".weight_scale_inv", ".weight_scale"];

    /// <summary>Prefixes under which the language model's modules ("embed_tokens", "layers", "norm") live.</summary>
    protected virtual IEnumerable<string> ModelPrefixes(MoEConfig config) => [config.ModelPrefix];

    protected virtual TensorRoleInfo ClassifyName(string name, MoEConfig config)
    {
        foreach (var prefix in ModelPrefixes(config))
        {
            if (!name.StartsWith(prefix, StringComparison.Ordinal)) continue;
            var rest = name.AsSpan(prefix.Length);
            if (rest.SequenceEqual("embed_tokens.weight")) return new(TensorRole.Embedding);
            if (rest.StartsWith("norm.")) return new(TensorRole.Norm, IsBias: rest.EndsWith(".bias"));
            if (rest.StartsWith("layers.") && TryParseIndex(name, prefix.Length + "layers.".Length, out int layer, out var layerRest))
                return ClassifyLayer(layerRest, layer, layer >= config.NumLayers, config);
        }
        if (name == "lm_head.weight") return new(TensorRole.LmHead);
        if (name == "lm_head.bias") return new(TensorRole.LmHead, IsBias: true);
        return ClassifyOutsideLayers(name, config);
    }

    /// <summary>Tensors outside the decoder layers that the family knows (vision tower, MTP head, ...).</summary>
    protected virtual TensorRoleInfo ClassifyOutsideLayers(string name, MoEConfig config) => TensorRoleInfo.Unknown;

    /// <summary>Classifies the part of a name after "layers.{i}." (<paramref name="inMtp"/>: the layer is an MTP layer).</summary>
    protected virtual TensorRoleInfo ClassifyLayer(string rest, int layer, bool inMtp, MoEConfig config)
    {
        if (ClassifyMoEBlock(rest, layer, inMtp, config) is { } moe) return moe;
        if (rest.StartsWith("self_attn.", StringComparison.Ordinal) || rest.StartsWith("linear_attn.", StringComparison.Ordinal))
            return ClassifyAttention(rest, layer, inMtp);
        if (IsLayerNorm(rest)) return new(TensorRole.Norm, layer, InMtp: inMtp, IsBias: rest.EndsWith(".bias", StringComparison.Ordinal));
        if (inMtp && ClassifyMtpPart(rest, layer) is { } mtp) return mtp;
        return new(TensorRole.Other, layer, InMtp: inMtp);
    }

    /// <summary>The MoE block, shared expert and dense MLP of a layer, or null when <paramref name="rest"/> is none of them.</summary>
    protected abstract TensorRoleInfo? ClassifyMoEBlock(string rest, int layer, bool inMtp, MoEConfig config);

    /// <summary>Parts of an MTP layer beyond a normal decoder layer (DeepSeek: enorm, hnorm, eh_proj, shared_head).</summary>
    protected virtual TensorRoleInfo? ClassifyMtpPart(string rest, int layer) => null;

    protected static TensorRoleInfo ClassifyAttention(string rest, int layer, bool inMtp)
    {
        int lastDot = rest.LastIndexOf('.');
        var module = lastDot < 0 ? rest : rest[..lastDot];
        var leaf = module[(module.LastIndexOf('.') + 1)..];
        bool isBias = rest.EndsWith(".bias", StringComparison.Ordinal);
        // q_norm, k_norm, q_a_layernorm, kv_a_layernorm, linear_attn.norm
        if (leaf.EndsWith("norm", StringComparison.Ordinal)) return new(TensorRole.Norm, layer, InMtp: inMtp, IsBias: isBias);
        return new(TensorRole.Attention, layer, InMtp: inMtp, IsBias: isBias);
    }

    private static readonly HashSet<string> LayerNormModules =
        ["input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm", "post_feedforward_layernorm"];

    protected static bool IsLayerNorm(string rest)
    {
        int dot = rest.IndexOf('.');
        return dot > 0 && LayerNormModules.Contains(rest[..dot]) && rest.IndexOf('.', dot + 1) < 0;
    }

    /// <summary>Parses "{digits}." at <paramref name="start"/>; <paramref name="rest"/> is what follows the dot.</summary>
    protected static bool TryParseIndex(string s, int start, out int index, out string rest)
    {
        index = 0;
        rest = "";
        int i = start;
        while (i < s.Length && char.IsAsciiDigit(s[i]))
        {
            if (index > 100_000_000) return false;
            index = index * 10 + (s[i] - '0');
            i++;
        }
        if (i == start || i >= s.Length || s[i] != '.') return false;
        rest = s[(i + 1)..];
        return true;
    }

    /// <summary>Splits "module.param" at the last dot.</summary>
    protected static (string Module, string Param) SplitParam(string s)
    {
        int dot = s.LastIndexOf('.');
        return dot < 0 ? (s, "") : (s[..dot], s[(dot + 1)..]);
    }

    // ---- the common MoE block layouts ----

    /// <summary>
    /// Names of a standard MoE block: <paramref name="Block"/> is the module prefix ("block_sparse_moe." or "mlp."),
    /// <paramref name="Router"/> the router module inside it, then the per-expert projection module names, the shared
    /// expert module ("shared_expert" / "shared_experts") and its sigmoid gate, and whether dense layers use
    /// mlp.gate_proj/up_proj/down_proj.
    /// </summary>
    protected sealed record StandardMoENames(
        string Block, string Router, string GateProj, string UpProj, string DownProj,
        string? Shared = null, string? SharedGate = null, bool DenseMlp = false);

    protected static TensorRoleInfo? ClassifyStandardMoE(string rest, int layer, bool inMtp, StandardMoENames n)
    {
        if (rest.StartsWith(n.Block, StringComparison.Ordinal))
        {
            var r = rest[n.Block.Length..];
            var (module, param) = SplitParam(r);
            if (module == n.Router)
            {
                return param switch
                {
                    "weight" => new(TensorRole.RouterWeight, layer, InMtp: inMtp),
                    "bias" => new(TensorRole.RouterBias, layer, InMtp: inMtp, IsBias: true),
                    "e_score_correction_bias" => new(TensorRole.CorrectionBias, layer, InMtp: inMtp, IsBias: true),
                    _ => null,
                };
            }
            if (r.StartsWith("experts.", StringComparison.Ordinal))
            {
                if (TryParseIndex(r, "experts.".Length, out int expert, out var expertRest))
                {
                    var (pm, pp) = SplitParam(expertRest);
                    var proj = pm == n.GateProj ? ExpertProjection.Gate : pm == n.UpProj ? ExpertProjection.Up
                        : pm == n.DownProj ? ExpertProjection.Down : (ExpertProjection?)null;
                    if (proj is not null && pp is "weight" or "bias")
                        return new(TensorRole.RoutedExpert, layer, expert, proj, InMtp: inMtp, IsBias: pp == "bias");
                    return null;
                }
                // transformers v5 fused layout: experts.gate_up_proj [E, 2I, H], experts.down_proj [E, H, I]
                return r["experts.".Length..] switch
                {
                    "gate_up_proj" or "gate_up_proj.weight" => new(TensorRole.RoutedExpert, layer, null, ExpertProjection.GateUp, Fused: true, InMtp: inMtp),
                    "down_proj" or "down_proj.weight" => new(TensorRole.RoutedExpert, layer, null, ExpertProjection.Down, Fused: true, InMtp: inMtp),
                    "gate_up_proj_bias" => new(TensorRole.RoutedExpert, layer, null, ExpertProjection.GateUp, Fused: true, InMtp: inMtp, IsBias: true),
                    "down_proj_bias" => new(TensorRole.RoutedExpert, layer, null, ExpertProjection.Down, Fused: true, InMtp: inMtp, IsBias: true),
                    _ => null,
                };
            }
            if (n.Shared is not null && module.StartsWith(n.Shared + ".", StringComparison.Ordinal) && param is "weight" or "bias")
            {
                var proj = MlpProjection(module[(n.Shared.Length + 1)..]);
                if (proj is not null) return new(TensorRole.SharedExpert, layer, null, proj, InMtp: inMtp, IsBias: param == "bias");
            }
            if (n.SharedGate is not null && module == n.SharedGate && param is "weight" or "bias")
                return new(TensorRole.SharedExpertGate, layer, InMtp: inMtp, IsBias: param == "bias");
        }
        if (n.DenseMlp && rest.StartsWith("mlp.", StringComparison.Ordinal))
        {
            var (module, param) = SplitParam(rest["mlp.".Length..]);
            var proj = MlpProjection(module);
            if (proj is not null && param is "weight" or "bias")
                return new(TensorRole.DenseMlp, layer, null, proj, InMtp: inMtp, IsBias: param == "bias");
        }
        return null;
    }

    protected static ExpertProjection? MlpProjection(string module) => module switch
    {
        "gate_proj" => ExpertProjection.Gate,
        "up_proj" => ExpertProjection.Up,
        "down_proj" => ExpertProjection.Down,
        _ => null,
    };

    /// <summary>The decoder or MTP layer's module prefix, e.g. "model.layers.3.".</summary>
    protected virtual string LayerPrefix(int layer, MoEConfig config) => $"{config.ModelPrefix}layers.{layer}.";

    /// <summary>The router weight's name inside a layer, e.g. "block_sparse_moe.gate.weight".</summary>
    protected abstract string RouterModule { get; }

    public string RouterWeightName(int layer, MoEConfig config) => LayerPrefix(layer, config) + RouterModule;

    /// <summary>The MoE block module of the router ("block_sparse_moe.", "mlp.") + "compressed_experts.".</summary>
    public virtual string CompressedExpertsPrefix(int layer, MoEConfig config) =>
        LayerPrefix(layer, config) + RouterModule[..(RouterModule.IndexOf('.') + 1)] + "compressed_experts.";
    public virtual string? RouterBiasName(int layer, MoEConfig config) => null;
    public virtual string? CorrectionBiasName(int layer, MoEConfig config) => null;
    public abstract ExpertTensorRef ExpertTensor(int layer, int expert, ExpertProjection projection, MoEConfig config);

    /// <summary>Expert reference of the standard per-expert or fused ([E, 2I, H] gate-then-up, [E, H, I]) layouts.</summary>
    protected static ExpertTensorRef StandardExpertTensor(string blockPrefix, int expert, ExpertProjection projection,
        MoEConfig config, string gateProj, string upProj, string downProj)
    {
        if (config.FusedExperts)
        {
            long i = config.ExpertIntermediateSize;
            return projection switch
            {
                ExpertProjection.Gate => new($"{blockPrefix}experts.gate_up_proj", ExpertLayout.Fused, expert, 0, i),
                ExpertProjection.Up => new($"{blockPrefix}experts.gate_up_proj", ExpertLayout.Fused, expert, i, i),
                ExpertProjection.Down => new($"{blockPrefix}experts.down_proj", ExpertLayout.Fused, expert),
                _ => throw GateUpNotAllowed(),
            };
        }
        var module = projection switch
        {
            ExpertProjection.Gate => gateProj,
            ExpertProjection.Up => upProj,
            ExpertProjection.Down => downProj,
            _ => throw GateUpNotAllowed(),
        };
        return new($"{blockPrefix}experts.{expert}.{module}.weight", ExpertLayout.PerExpert);
    }

    protected static ArgumentException GateUpNotAllowed() =>
        new("ExpertTensor takes Gate, Up or Down; GateUp names a fused tensor, not one expert's projection", "projection");

    // ---- config helpers ----

    /// <summary>"architectures"[0], or "model_type" when absent.</summary>
    public static string ArchitectureOf(JsonObject config)
    {
        if (config["architectures"] is JsonArray { Count: > 0 } a && a[0] is JsonValue v && v.GetValueKind() == JsonValueKind.String)
            return v.GetValue<string>();
        return ModelTypeOf(config) ?? "(unknown)";
    }

    public static string? ModelTypeOf(JsonObject config) =>
        config["model_type"] is JsonValue v && v.GetValueKind() == JsonValueKind.String ? v.GetValue<string>() : null;

    /// <summary>The dotted paths of those <paramref name="candidates"/> present in the reader's section.</summary>
    protected static IReadOnlyList<string> PresentKeys(ConfigReader r, params string[] candidates) =>
        candidates.Where(r.Has).Select(r.PathOf).ToList();

    /// <summary>Reads the routed expert count and top-k and checks 1 ≤ top-k ≤ experts.</summary>
    protected static (int Experts, int TopK) ReadExpertsAndTopK(ConfigReader r, string expertKey, string topKKey)
    {
        int experts = r.PositiveInt(expertKey);
        int topK = r.PositiveInt(topKKey);
        if (topK > experts)
            throw r.Error(topKKey, $"= {topK} exceeds {r.PathOf(expertKey)} = {experts}");
        return (experts, topK);
    }

    protected static IReadOnlyList<bool> AllLayers(int n, bool value) => Enumerable.Repeat(value, n).ToList();

    /// <summary>
    /// The MoE facts of a family whose every decoder layer is MoE, with one expert-count key and one top-k key
    /// (Mixtral-like). Families with more (shared experts, fused or MXFP4 layouts, router bias) adjust the result with
    /// <c>with</c>.
    /// </summary>
    protected MoEConfig ReadEveryLayerMoE(ConfigReader r, JsonObject config, string expertKey, string topKKey, bool normTopK,
        bool tieEmbeddingsByDefault = false)
    {
        var (experts, topK) = ReadExpertsAndTopK(r, expertKey, topKKey);
        int layers = r.PositiveInt("num_hidden_layers");
        return new MoEConfig
        {
            Family = Name,
            Architecture = ArchitectureOf(config),
            NumLayers = layers,
            HiddenSize = r.PositiveInt("hidden_size"),
            VocabSize = r.PositiveInt("vocab_size"),
            NumExperts = experts,
            TopK = topK,
            ExpertIntermediateSize = r.PositiveInt("intermediate_size"),
            IsMoELayer = AllLayers(layers, true),
            NormTopKProb = normTopK,
            TieWordEmbeddings = r.Bool("tie_word_embeddings", tieEmbeddingsByDefault),
            ExpertCountKeys = PresentKeys(r, expertKey),
            TopKKey = topKKey,
        };
    }

    protected static MoeCompressException ConfigError(string configPath, string problem) =>
        new(ErrorKind.InvalidConfig, $"{configPath}: {problem}");

    public override string ToString() => Name;
}
