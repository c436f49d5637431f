using MoECompress.Formats.Errors;
using MoECompress.Formats.Families;
using MoECompress.Formats.Safetensors;

namespace MoECompress.Compression.Surgery;

/// <summary>The routed tensors of one MoE layer of the input, grouped the way <see cref="ExpertSurgery"/> rewrites them.</summary>
internal sealed class RoutedLayerTensors(int layer, int experts)
{
    public int Layer { get; } = layer;

    /// <summary>Router weight, router bias and e_score_correction_bias: [E, ...], one row per expert.</summary>
    public List<string> RouterRows { get; } = [];

    /// <summary>Fused expert tensors [E, ...] (weights, biases, MXFP4 scales): one slab per expert along dimension 0.</summary>
    public List<string> Fused { get; } = [];

    /// <summary>Per original expert, its own tensors (weights, biases, FP8 scale companions) in input order.</summary>
    public List<string>[] PerExpert { get; } = Enumerable.Range(0, experts).Select(_ => new List<string>()).ToArray();

    /// <summary>Every routed tensor of the layer.</summary>
    public IEnumerable<string> All => RouterRows.Concat(Fused).Concat(PerExpert.SelectMany(x => x));
}

/// <summary>
/// Every input tensor's role (from the family adapter) and, for each routed layer present in the checkpoint, its
/// routed tensors. Built from the tensor names and headers only (no data read).
/// </summary>
internal sealed class RoutedTensorLayout
{
    public ModelCheckpoint Input { get; }
    public IMoEFamily Family => Input.Family;
    public MoEConfig Config => Input.MoE;

    /// <summary>Role of every input tensor.</summary>
    public IReadOnlyDictionary<string, TensorRoleInfo> Roles { get; }

    /// <summary>Routed layers present in the checkpoint (decoder MoE layers, then the stored MTP MoE layers), ascending.</summary>
    public IReadOnlyList<int> Layers { get; }

    public IReadOnlyDictionary<int, RoutedLayerTensors> ByLayer { get; }

    private RoutedTensorLayout(ModelCheckpoint input, Dictionary<string, TensorRoleInfo> roles, List<int> layers,
        Dictionary<int, RoutedLayerTensors> byLayer)
    {
        Input = input;
        Roles = roles;
        Layers = layers;
        ByLayer = byLayer;
    }

    /// <summary>True for the roles whose tensors have one entry per routed expert.</summary>
    public static bool IsRouted(TensorRole role) =>
        role is TensorRole.RoutedExpert or TensorRole.RouterWeight or TensorRole.RouterBias or TensorRole.CorrectionBias;

    public static RoutedTensorLayout Build(ModelCheckpoint input)
    {
        var cfg = input.MoE;
        var src = input.Tensors;
        var mtpPresent = input.MtpLayersPresent.ToHashSet();
        var layers = cfg.MoELayerIndices(includeMtp: true).Where(l => !cfg.IsMtpLayer(l) || mtpPresent.Contains(l)).ToList();
        var byLayer = layers.ToDictionary(l => l, l => new RoutedLayerTensors(l, cfg.NumExperts));
        var roles = new Dictionary<string, TensorRoleInfo>(src.Names.Count, StringComparer.Ordinal);
        foreach (var name in src.Names)
        {
            var role = input.Family.Classify(name, cfg);
            roles[name] = role;
            if (!IsRouted(role.Role)) continue;
            if (role.Layer is not int layer || !byLayer.TryGetValue(layer, out var group))
                throw new MoeCompressException(ErrorKind.InvalidCheckpoint,
                    $"tensor '{name}' is a {role.Role} tensor of layer {role.Layer?.ToString() ?? "?"}, which config.json does not make a routed MoE layer");
            var info = src.GetInfo(name);
            if (role.Role == TensorRole.RoutedExpert && !role.Fused)
            {
                if (role.Expert is not int e || e < 0 || e >= cfg.NumExperts)
                    throw new MoeCompressException(ErrorKind.InvalidCheckpoint,
                        $"tensor '{name}' belongs to expert {role.Expert?.ToString() ?? "?"}, but the model has experts 0..{cfg.NumExperts - 1}");
                if (role.Projection is null)
                    throw new MoeCompressException(ErrorKind.InvalidCheckpoint, $"tensor '{name}' is a routed-expert tensor of no known projection");
                group.PerExpert[e].Add(name);
                continue;
            }
            if (info.Shape.Length == 0 || info.Shape[0] != cfg.NumExperts)
                throw new MoeCompressException(ErrorKind.InvalidCheckpoint,
                    $"tensor '{name}' has shape [{string.Join(", ", info.Shape)}] but as a {(role.Fused ? "fused expert" : role.Role.ToString())} tensor its first dimension must be the {cfg.NumExperts} experts");
            (role.Role == TensorRole.RoutedExpert ? group.Fused : group.RouterRows).Add(name);
        }
        foreach (var l in layers)
        {
            var router = input.Family.RouterWeightName(l, cfg);
            if (!byLayer[l].RouterRows.Contains(router))
                throw new MoeCompressException(ErrorKind.InvalidCheckpoint, $"router '{router}' of MoE layer {l} is missing from the checkpoint");
            if (byLayer[l].Fused.Count == 0 && byLayer[l].PerExpert.Any(x => x.Count == 0))
                throw new MoeCompressException(ErrorKind.InvalidCheckpoint,
                    $"MoE layer {l}: expert {Array.FindIndex(byLayer[l].PerExpert, x => x.Count == 0)} has no tensors in the checkpoint");
        }
        return new RoutedTensorLayout(input, roles, layers, byLayer);
    }

    /// <summary>
    /// The name of per-expert tensor <paramref name="name"/> (of expert <paramref name="from"/>, projection
    /// <paramref name="projection"/>) for expert <paramref name="to"/>: the family's tensor reference gives both experts'
    /// weight names; companions (bias, FP8 <c>weight_scale_inv</c>) live in the same module, so the module part is
    /// swapped. The result is checked by classifying it again.
    /// </summary>
    public string RenameExpertTensor(string name, int layer, int from, int to, ExpertProjection projection, MoEConfig toConfig)
    {
        var oldRef = Family.ExpertTensor(layer, from, projection, Config).TensorName;
        var newRef = Family.ExpertTensor(layer, to, projection, toConfig).TensorName;
        string result;
        if (name == oldRef) result = newRef;
        else
        {
            int oldDot = oldRef.LastIndexOf('.'), newDot = newRef.LastIndexOf('.');
            if (oldDot < 0 || newDot < 0 || !name.StartsWith(oldRef[..(oldDot + 1)], StringComparison.Ordinal))
                throw new MoeCompressException(ErrorKind.InvalidCheckpoint,
                    $"tensor '{name}' of expert {from} is not in the module of its weight '{oldRef}'; cannot renumber it");
            result = newRef[..(newDot + 1)] + name[(oldDot + 1)..];
        }
        var expected = Roles[name];
        var role = Family.Classify(result, toConfig);
        if (role.Role != TensorRole.RoutedExpert || role.Layer != layer || role.Expert != to || role.Projection != projection
            || role.IsBias != expected.IsBias || role.QuantScale != expected.QuantScale)
            throw new MoeCompressException(ErrorKind.Internal,
                $"renumbering '{name}' (expert {from}) to expert {to} gave '{result}', which the {Family.Name} adapter does not read back as that expert's tensor");
        return result;
    }
}
