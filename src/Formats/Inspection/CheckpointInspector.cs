using MoECompress.Formats.Families;
using MoECompress.Formats.Safetensors;

namespace MoECompress.Formats.Inspection;

/// <summary>Reads a checkpoint's headers and config and summarises its MoE structure, sizes and parameter counts.</summary>
public static class CheckpointInspector
{
    /// <summary>
    /// Opens <paramref name="dir"/> (config.json + safetensors; structure validated, tensor data not read) and inspects it.
    /// Errors are those of <see cref="ModelCheckpoint.Open(string, ModelCheckpointOptions?)"/>.
    /// </summary>
    public static InspectionReport Inspect(string dir, CancellationToken cancellationToken = default)
    {
        using var checkpoint = ModelCheckpoint.Open(dir, new ModelCheckpointOptions { ValidateRouterValues = false }, cancellationToken);
        return Inspect(checkpoint);
    }

    /// <summary>Inspects an opened checkpoint (headers only).</summary>
    public static InspectionReport Inspect(ModelCheckpoint checkpoint)
    {
        var moe = checkpoint.MoE;
        var tensors = checkpoint.Tensors;
        var bytes = new Accumulator();
        var parameters = new Accumulator();
        var dtypes = new SortedDictionary<string, (int Count, long Bytes)>(StringComparer.Ordinal);
        int layerSlots = Math.Max(moe.NumLayersWithMtp, checkpoint.MtpLayersPresent.Count == 0 ? moe.NumLayers : checkpoint.MtpLayersPresent.Max() + 1);
        var layerParams = new long[layerSlots];
        var layerRouted = new long[layerSlots];
        long total = 0, totalBytes = 0, routed = 0, mtp = 0, inactiveOutsideLayers = 0;
        var compressed = CompressedExpertsConfig.Read(checkpoint.Config, checkpoint.ConfigPath, moe.TopK);
        var vectorNames = new HashSet<string>(StringComparer.Ordinal);
        if (compressed is not null)
            foreach (var l in moe.MoELayerIndices(includeMtp: false))
            {
                var (c1, c2, c3) = CompressedExpertsConfig.TensorNames(checkpoint.Family, l, moe);
                vectorNames.UnionWith([c1, c2, c3]);
            }
        var layerVectors = new long[layerSlots];
        int computedPerToken = moe.TopK - (compressed?.Aux ?? 0);

        foreach (var name in tensors.Names)
        {
            var info = tensors.GetInfo(name);
            var role = checkpoint.Classify(name);
            long p = LogicalParameters(name, info, role);
            // A packed quantized module is presented dequantized: count the bytes it takes on disk.
            long b = tensors is Quantized.QuantizedTensorSource packed && packed.ModuleOf(name) is { } module
                ? module.Parts.Sum(part => packed.Inner.GetInfo(part).ByteLength)
                : tensors is Gguf.GgufTensorSource gguf ? gguf.Stored(name).Bytes : info.ByteLength;
            total += p;
            totalBytes += b;
            var key = tensors is Gguf.GgufTensorSource g ? "gguf " + g.Stored(name).Type : info.DType.ToHeaderName();
            dtypes[key] = dtypes.TryGetValue(key, out var d) ? (d.Count + 1, d.Bytes + b) : (1, b);
            bytes.Add(role.Role, b);
            parameters.Add(role.Role, p);
            if (role.Role == TensorRole.RoutedExpert) routed += p;
            if (role.InMtp) mtp += p;
            if (role.Layer is int l && l >= 0 && l < layerSlots)
            {
                layerParams[l] += p;
                if (role.Role == TensorRole.RoutedExpert) layerRouted[l] += p;
                if (vectorNames.Contains(name)) layerVectors[l] += p;
            }
            else if (role.Role == TensorRole.Vision && !role.InMtp)
            {
                inactiveOutsideLayers += p;
            }
        }

        var layers = new List<LayerSummary>();
        long active = total - mtp - inactiveOutsideLayers;
        for (int l = 0; l < layerSlots; l++)
        {
            bool isMtp = l >= moe.NumLayers;
            if (isMtp && !checkpoint.MtpLayersPresent.Contains(l)) continue;
            bool hasExperts = moe.HasRoutedExperts(l);
            // Substituted checkpoints compute k − aux experts per token and read the vectors of the aux others.
            long activeRouted = hasExperts ? layerRouted[l] * computedPerToken / moe.NumExperts : layerRouted[l];
            long activeVectors = hasExperts ? layerVectors[l] * (compressed?.Aux ?? 0) / moe.NumExperts : layerVectors[l];
            long layerActive = layerParams[l] - layerRouted[l] + activeRouted - layerVectors[l] + activeVectors;
            if (!isMtp) active -= layerRouted[l] - activeRouted + layerVectors[l] - activeVectors;
            layers.Add(new LayerSummary(l, hasExperts ? "moe" : "dense", isMtp, hasExperts ? moe.NumExperts : 0, layerParams[l], isMtp ? 0 : layerActive));
        }
        int routedLayers = layers.Count(x => x.Experts > 0);
        long perExpert = routedLayers == 0 ? 0 : routed / routedLayers / Math.Max(1, moe.NumExperts);

        return new InspectionReport
        {
            Directory = checkpoint.Tensors is Gguf.GgufTensorSource ggufFile ? ggufFile.File.Path : checkpoint.Directory,
            Family = checkpoint.Family.Name,
            Architecture = moe.Architecture,
            HiddenSize = moe.HiddenSize,
            VocabSize = moe.VocabSize,
            NumLayers = moe.NumLayers,
            MoELayers = moe.NumMoELayers,
            DenseLayers = moe.NumLayers - moe.NumMoELayers,
            Layers = layers,
            ExpertsPerLayer = moe.NumExperts,
            TopK = moe.TopK,
            CompressedExpertsAux = compressed?.Aux,
            ExpertIntermediateSize = moe.ExpertIntermediateSize,
            DenseIntermediateSize = moe.DenseIntermediateSize,
            Groups = moe.NumGroups,
            TopKGroups = moe.TopKGroups,
            Scoring = moe.Scoring == RouterScoring.Sigmoid ? "sigmoid" : "softmax",
            NormTopKProb = moe.NormTopKProb,
            RoutedScalingFactor = moe.RoutedScalingFactor,
            RouterBias = moe.HasRouterBias,
            CorrectionBias = moe.HasCorrectionBias,
            SharedExperts = moe.NumSharedExperts,
            SharedExpertIntermediateSize = moe.SharedExpertIntermediateSize,
            SharedExpertGate = moe.HasSharedExpertGate,
            MtpLayers = moe.NumMtpLayers,
            MtpLayersPresent = checkpoint.MtpLayersPresent,
            FusedExperts = moe.FusedExperts,
            Mxfp4Experts = moe.Mxfp4Experts,
            TieWordEmbeddings = moe.TieWordEmbeddings,
            TensorCount = tensors.Names.Count,
            ShardCount = tensors is SafetensorsCheckpoint s ? s.ShardFiles.Count : 1,
            TotalBytes = totalBytes,
            DTypes = dtypes.ToDictionary(kv => kv.Key, kv => new DTypeStatistics(kv.Value.Count, kv.Value.Bytes)),
            TotalParameters = total,
            ActiveParameters = active,
            RoutedExpertParameters = routed,
            ParametersPerExpert = perExpert,
            MtpParameters = mtp,
            Bytes = bytes.ToSizes(),
            Parameters = parameters.ToSizes(),
        };
    }

    /// <summary>
    /// Logical parameters of a tensor: its elements, except quantization scales (0) and MXFP4 blocks (two FP4 values
    /// per byte).
    /// </summary>
    public static long LogicalParameters(string name, TensorInfo info, TensorRoleInfo role)
    {
        if (role.QuantScale) return 0;
        if (info.DType == SafetensorsDType.U8 && name.EndsWith("_blocks", StringComparison.Ordinal)) return info.ElementCount * 2;
        return info.ElementCount;
    }

    private sealed class Accumulator
    {
        private long _attention, _routed, _shared, _dense, _embeddings, _router, _norms, _other;

        public void Add(TensorRole role, long v)
        {
            switch (role)
            {
                case TensorRole.Attention: _attention += v; break;
                case TensorRole.RoutedExpert: _routed += v; break;
                case TensorRole.SharedExpert or TensorRole.SharedExpertGate: _shared += v; break;
                case TensorRole.DenseMlp: _dense += v; break;
                case TensorRole.Embedding or TensorRole.LmHead: _embeddings += v; break;
                case TensorRole.RouterWeight or TensorRole.RouterBias or TensorRole.CorrectionBias: _router += v; break;
                case TensorRole.Norm: _norms += v; break;
                default: _other += v; break;
            }
        }

        public ComponentSizes ToSizes() => new()
        {
            Attention = _attention, RoutedExperts = _routed, SharedExperts = _shared, DenseMlp = _dense,
            Embeddings = _embeddings, Router = _router, Norms = _norms, Other = _other,
        };
    }
}
