using System.Buffers.Binary;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Safetensors;

namespace MoECompress.Formats.Families;

/// <summary>
/// Checks that config.json and the tensors agree before anything expensive runs: every routed-expert and router
/// tensor the config implies exists with the expected shape, no expert or MoE layer beyond the config's counts exists,
/// and router weights and biases hold only finite values. Errors name config.json, the key and the tensor.
/// </summary>
public static class CheckpointValidator
{
    /// <summary>
    /// Structure only (names and header shapes; no tensor data is read). MTP layers are checked when their tensors are
    /// present (many releases drop them). Throws InvalidConfig on the first disagreement.
    /// </summary>
    public static void ValidateStructure(IMoEFamily family, MoEConfig cfg, ITensorSource tensors, string configPath)
    {
        var names = tensors.Names;
        var present = new HashSet<string>(names, StringComparer.Ordinal);
        string expertKey = cfg.ExpertCountKeys.Count > 0 ? cfg.ExpertCountKeys[0] : cfg.ConfigSectionPrefix + "num_experts";
        string hiddenKey = cfg.ConfigSectionPrefix + "hidden_size";
        string interKey = cfg.ConfigSectionPrefix + cfg.ExpertIntermediateKey;
        string layersKey = cfg.ConfigSectionPrefix + "num_hidden_layers";
        int e = cfg.NumExperts, h = cfg.HiddenSize, inter = cfg.ExpertIntermediateSize;

        // Nothing may sit beyond the config's counts.
        var mtpPresent = new SortedSet<int>();
        foreach (var name in names)
        {
            var role = family.Classify(name, cfg);
            if (role.InMtp && role.Layer is { } ml) mtpPresent.Add(ml);
            bool moeTensor = role.Role is TensorRole.RoutedExpert or TensorRole.RouterWeight or TensorRole.RouterBias or TensorRole.CorrectionBias;
            if (!moeTensor || role.Layer is not { } layer) continue;
            if (layer >= cfg.NumLayersWithMtp)
                throw Error(configPath, $"says {layersKey}={cfg.NumLayers}" + (cfg.NumMtpLayers > 0 ? $" with {cfg.NumMtpLayers} MTP layer(s)" : "")
                    + $" but tensor '{name}' belongs to layer {layer}");
            if (!cfg.HasRoutedExperts(layer))
                throw Error(configPath, $"makes layer {layer} a dense layer but tensor '{name}' is a {Describe(role.Role)} tensor");
            if (role.Expert is { } ex && ex >= e)
                throw Error(configPath, $"says {expertKey}={e} but tensor '{name}' belongs to expert {ex}");
        }

        foreach (int layer in cfg.MoELayerIndices(includeMtp: false).Concat(mtpPresent.Where(cfg.HasRoutedExperts)))
        {
            var router = family.RouterWeightName(layer, cfg);
            var info = Require(tensors, present, router, configPath, $"says {expertKey}={e} and layer {layer} is a MoE layer");
            if (info.Shape.Length != 2) throw Error(configPath, $"expects router '{router}' to be [{e}, {h}] but it is {ShapeText(info.Shape)}");
            if (info.Shape[0] != e) throw Error(configPath, $"says {expertKey}={e} but tensor '{router}' has {info.Shape[0]} rows");
            if (info.Shape[1] != h) throw Error(configPath, $"says {hiddenKey}={h} but tensor '{router}' has {info.Shape[1]} columns");
            foreach (var vector in new[] { family.RouterBiasName(layer, cfg), family.CorrectionBiasName(layer, cfg) })
            {
                if (vector is null) continue;
                var vi = Require(tensors, present, vector, configPath, $"says {expertKey}={e} and layer {layer} is a MoE layer");
                if (vi.Shape.Length != 1 || vi.Shape[0] != e)
                    throw Error(configPath, $"says {expertKey}={e} but tensor '{vector}' is {ShapeText(vi.Shape)} instead of [{e}]");
            }
            ValidateExperts(family, cfg, tensors, present, layer, configPath, expertKey, hiddenKey, interKey);
        }
    }

    private static void ValidateExperts(IMoEFamily family, MoEConfig cfg, ITensorSource tensors, HashSet<string> present,
        int layer, string configPath, string expertKey, string hiddenKey, string interKey)
    {
        int e = cfg.NumExperts, h = cfg.HiddenSize, inter = cfg.ExpertIntermediateSize;
        string dims = $"{hiddenKey}={h}, {interKey}={inter}";
        // Fused tensors hold several projections: collect which, then check each tensor once.
        var fused = new Dictionary<string, (ExpertTensorRef Ref, HashSet<ExpertProjection> Projections)>(StringComparer.Ordinal);
        for (int x = 0; x < e; x++)
        {
            foreach (var proj in new[] { ExpertProjection.Gate, ExpertProjection.Up, ExpertProjection.Down })
            {
                var r = family.ExpertTensor(layer, x, proj, cfg);
                long outDim = proj == ExpertProjection.Down ? h : inter, inDim = proj == ExpertProjection.Down ? inter : h;
                if (r.Layout == ExpertLayout.PerExpert)
                {
                    var info = Require(tensors, present, r.TensorName, configPath, $"says {expertKey}={e} and layer {layer} is a MoE layer");
                    if (!info.Shape.SequenceEqual([outDim, inDim]))
                        throw Error(configPath, $"says {dims} so tensor '{r.TensorName}' should be [{outDim}, {inDim}] but it is {ShapeText(info.Shape)}");
                    continue;
                }
                if (!fused.TryGetValue(r.TensorName, out var entry))
                    fused[r.TensorName] = entry = (r, []);
                entry.Projections.Add(proj);
            }
        }
        foreach (var (name, (r, projections)) in fused)
        {
            long outTotal = projections.Sum(p => p == ExpertProjection.Down ? (long)h : inter);
            long inDim = projections.Contains(ExpertProjection.Down) ? inter : h;
            var info = Require(tensors, present, name, configPath, $"says {expertKey}={e} and layer {layer} is a MoE layer");
            if (info.Shape.Length == 0 || info.Shape[0] != e)
                throw Error(configPath, $"says {expertKey}={e} but tensor '{name}' holds {(info.Shape.Length == 0 ? 0 : info.Shape[0])} experts along dimension 0");
            long[] expected = r.Layout switch
            {
                ExpertLayout.Fused => [e, outTotal, inDim],
                ExpertLayout.FusedTransposed => [e, inDim, outTotal],
                ExpertLayout.FusedMxfp4 => [e, outTotal, inDim / 32, 16],
                _ => throw new InvalidOperationException($"unexpected layout {r.Layout}"),
            };
            if (r.Layout == ExpertLayout.FusedMxfp4 && inDim % 32 != 0)
                throw Error(configPath, $"says {dims}: MXFP4 tensor '{name}' needs an input size divisible by 32");
            if (!info.Shape.SequenceEqual(expected))
                throw Error(configPath, $"says {expertKey}={e}, {dims} so tensor '{name}' should be {ShapeText(expected)} but it is {ShapeText(info.Shape)}");
            if (r.ScalesName is { } scales)
            {
                var si = Require(tensors, present, scales, configPath, $"stores layer {layer}'s experts as MXFP4");
                if (!si.Shape.SequenceEqual(expected[..3]))
                    throw Error(configPath, $"says {expertKey}={e}, {dims} so tensor '{scales}' should be {ShapeText(expected[..3])} but it is {ShapeText(si.Shape)}");
            }
            if (r.BiasName is { } bias)
            {
                var bi = Require(tensors, present, bias, configPath, $"says {expertKey}={e} and layer {layer} is a MoE layer");
                if (!bi.Shape.SequenceEqual([e, outTotal]))
                    throw Error(configPath, $"says {expertKey}={e}, {dims} so tensor '{bias}' should be [{e}, {outTotal}] but it is {ShapeText(bi.Shape)}");
            }
        }
    }

    /// <summary>
    /// Router weights, router biases and correction biases of every MoE layer present (MTP included) must be finite;
    /// throws InvalidValues naming the tensor and the first bad element.
    /// </summary>
    public static void ValidateRouterValues(IMoEFamily family, MoEConfig cfg, ITensorSource tensors, CancellationToken cancellationToken = default)
    {
        for (int layer = 0; layer < cfg.NumLayersWithMtp; layer++)
        {
            if (!cfg.HasRoutedExperts(layer)) continue;
            foreach (var name in new[] { family.RouterWeightName(layer, cfg), family.RouterBiasName(layer, cfg), family.CorrectionBiasName(layer, cfg) })
            {
                cancellationToken.ThrowIfCancellationRequested();
                if (name is null || !tensors.Contains(name)) continue;
                var info = tensors.GetInfo(name);
                long bad = FirstNonFinite(tensors.GetBytes(name), info.DType);
                if (bad < 0) continue;
                double value = ExpertWeights.ReadFloat(tensors.GetBytes(name), info.DType, bad);
                string where = info.Shape.Length == 2 ? $" (row {bad / info.Shape[1]}, column {bad % info.Shape[1]})" : "";
                throw new MoeCompressException(ErrorKind.InvalidValues,
                    $"tensor '{name}' holds {(double.IsNaN(value) ? "NaN" : value > 0 ? "+Inf" : "-Inf")} at element {bad}{where}; router weights must be finite");
            }
        }
    }

    /// <summary>Index of the first NaN/Inf element, or −1. Integer dtypes are always finite.</summary>
    public static long FirstNonFinite(ReadOnlySpan<byte> bytes, SafetensorsDType dtype)
    {
        switch (dtype)
        {
            case SafetensorsDType.BF16:
                for (int i = 0; i + 1 < bytes.Length; i += 2)
                    if ((BinaryPrimitives.ReadUInt16LittleEndian(bytes[i..]) & 0x7F80) == 0x7F80) return i / 2;
                return -1;
            case SafetensorsDType.F16:
                for (int i = 0; i + 1 < bytes.Length; i += 2)
                    if ((BinaryPrimitives.ReadUInt16LittleEndian(bytes[i..]) & 0x7C00) == 0x7C00) return i / 2;
                return -1;
            case SafetensorsDType.F32:
                for (int i = 0; i + 3 < bytes.Length; i += 4)
                    if (!float.IsFinite(BinaryPrimitives.ReadSingleLittleEndian(bytes[i..]))) return i / 4;
                return -1;
            case SafetensorsDType.F64:
                for (int i = 0; i + 7 < bytes.Length; i += 8)
                    if (!double.IsFinite(BinaryPrimitives.ReadDoubleLittleEndian(bytes[i..]))) return i / 8;
                return -1;
            case SafetensorsDType.F8_E4M3:
                for (int i = 0; i < bytes.Length; i++)
                    if ((bytes[i] & 0x7F) == 0x7F) return i;
                return -1;
            case SafetensorsDType.F8_E5M2:
                for (int i = 0; i < bytes.Length; i++)
                    if ((bytes[i] & 0x7C) == 0x7C) return i;
                return -1;
            default:
                return -1;
        }
    }

    private static TensorInfo Require(ITensorSource tensors, HashSet<string> present, string name, string configPath, string why)
    {
        if (!present.Contains(name)) throw Error(configPath, $"{why} but tensor '{name}' is missing");
        return tensors.GetInfo(name);
    }

    private static string Describe(TensorRole role) => role switch
    {
        TensorRole.RoutedExpert => "routed-expert",
        TensorRole.RouterWeight => "router",
        TensorRole.RouterBias => "router bias",
        TensorRole.CorrectionBias => "router correction bias",
        _ => role.ToString(),
    };

    internal static string ShapeText(IEnumerable<long> shape) => "[" + string.Join(", ", shape) + "]";

    private static MoeCompressException Error(string configPath, string problem) =>
        new(ErrorKind.InvalidConfig, $"{configPath} {problem}");
}
