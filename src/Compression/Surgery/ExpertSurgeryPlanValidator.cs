using MoECompress.Formats.Errors;
using MoECompress.Formats.Families;
using MoECompress.Formats.Safetensors;

namespace MoECompress.Compression.Surgery;

/// <summary>
/// Checks an <see cref="ExpertSurgeryPlan"/> against the input checkpoint before anything is written: every routed layer
/// listed once with one common count, the MoE invariants (<see cref="MoEInvariants"/>), indices, member weights, group
/// balance for pure prunes, and what merging needs (weights supplied, floating-point experts).
/// </summary>
internal static class ExpertSurgeryPlanValidator
{
    /// <summary>How <see cref="MoEInvariants.CheckOutputCount"/> names the count of a plan in its messages.</summary>
    internal const string CountOption = "plan output experts";

    /// <summary>True when no output expert is merged and every router row is a representative's (pruning).</summary>
    public static bool IsPurePrune(ExpertSurgeryPlan plan) =>
        plan.Layers.Values.All(l => l.All(o => !o.Merged && o.RouterRow == RouterRowRule.Representative));

    public static void Validate(RoutedTensorLayout layout, ExpertSurgeryPlan plan)
    {
        var cfg = layout.Config;
        if (string.IsNullOrWhiteSpace(plan.Operation))
            throw Usage("the plan has no operation name (\"prune\", \"merge\", ...)");
        if (plan.Layers is null || plan.Layers.Count == 0)
            throw Usage($"the plan lists no layers; it must list every routed layer ({string.Join(", ", layout.Layers)})");

        foreach (var l in layout.Layers)
            if (!plan.Layers.ContainsKey(l))
                throw Usage($"the plan does not list routed layer {l}; every routed layer ({string.Join(", ", layout.Layers)}) must be rewritten alike");
        foreach (var l in plan.Layers.Keys.Order())
            if (!layout.ByLayer.ContainsKey(l))
                throw Usage($"the plan lists layer {l}, which has no routed experts in this checkpoint (routed layers: {string.Join(", ", layout.Layers)})");

        int first = layout.Layers[0];
        int count = plan.Layers[first]?.Count ?? throw Usage($"layer {first}: the plan's expert list is null");
        foreach (var l in layout.Layers)
        {
            var list = plan.Layers[l] ?? throw Usage($"layer {l}: the plan's expert list is null");
            if (list.Count != count)
                throw new MoeCompressException(ErrorKind.Infeasible,
                    $"layer {l} keeps {list.Count} experts but layer {first} keeps {count}; config.json holds one expert count for every MoE layer");
        }
        MoEInvariants.CheckOutputCount(cfg, count, CountOption);

        bool purePrune = IsPurePrune(plan);
        bool anyMerged = false;
        foreach (var l in layout.Layers)
        {
            var list = plan.Layers[l];
            var copied = new HashSet<int>();
            for (int k = 0; k < list.Count; k++)
            {
                var o = list[k] ?? throw Usage($"layer {l}: output expert {k} is null");
                CheckExpert(cfg, l, k, o);
                if (!o.Merged && !copied.Add(o.Representative))
                    throw Usage($"layer {l}: original expert {o.Representative} is copied twice (output experts {FirstCopy(list, o.Representative)} and {k}); only merged experts may share a representative");
                anyMerged |= o.Merged;
            }
            if (purePrune && cfg.NumGroups > 1) CheckGroups(cfg, l, list);
            if (list.Any(o => o.Merged)) CheckMergeable(layout, l);
            if (list.Any(o => o.RouterRow == RouterRowRule.Weighted)) CheckWeightedRows(layout, l);
        }
        if (anyMerged && plan.Weights is null)
            throw Usage("the plan has merged experts but no merged weights (ExpertSurgeryPlan.Weights)");
    }

    private static void CheckExpert(MoEConfig cfg, int l, int k, OutputExpert o)
    {
        int e = cfg.NumExperts;
        if (o.Representative < 0 || o.Representative >= e)
            throw Usage($"layer {l}, output expert {k}: representative {o.Representative} does not exist (experts 0..{e - 1})");
        if (o.Members is null || o.Members.Count == 0)
            throw Usage($"layer {l}, output expert {k}: no members (a kept expert lists itself)");
        if (o.MemberWeights is null || o.MemberWeights.Count != o.Members.Count)
            throw Usage($"layer {l}, output expert {k}: {o.MemberWeights?.Count ?? 0} member weights for {o.Members.Count} members");
        var seen = new HashSet<int>();
        foreach (var m in o.Members)
        {
            if (m < 0 || m >= e) throw Usage($"layer {l}, output expert {k}: member {m} does not exist (experts 0..{e - 1})");
            if (!seen.Add(m)) throw Usage($"layer {l}, output expert {k}: member {m} is listed twice");
        }
        if (!seen.Contains(o.Representative))
            throw Usage($"layer {l}, output expert {k}: representative {o.Representative} is not one of its members [{string.Join(", ", o.Members)}]");
        double sum = 0;
        foreach (var w in o.MemberWeights)
        {
            if (!double.IsFinite(w) || w < 0)
                throw Usage($"layer {l}, output expert {k}: member weight {w} must be finite and non-negative");
            sum += w;
        }
        if (!Enum.IsDefined(o.RouterRow))
            throw Usage($"layer {l}, output expert {k}: unknown router row rule {(int)o.RouterRow}");
        if ((o.Merged || o.RouterRow == RouterRowRule.Weighted) && !(sum > 0))
            throw Usage($"layer {l}, output expert {k}: member weights sum to {sum}; a merged or weighted expert needs a positive sum");
    }

    private static int FirstCopy(IReadOnlyList<OutputExpert> list, int representative)
    {
        for (int k = 0; k < list.Count; k++)
            if (!list[k].Merged && list[k].Representative == representative) return k;
        return -1;
    }

    /// <summary>Same count per group, and the output positions of group g hold experts of group g (routing groups are contiguous).</summary>
    private static void CheckGroups(MoEConfig cfg, int l, IReadOnlyList<OutputExpert> list)
    {
        var kept = list.Select(o => o.Representative).ToList();
        MoEInvariants.CheckGroupBalance(cfg, l, kept);
        int oldSize = cfg.NumExperts / cfg.NumGroups, newSize = list.Count / cfg.NumGroups;
        for (int k = 0; k < kept.Count; k++)
        {
            int from = kept[k] / oldSize, to = k / newSize;
            if (from != to)
                throw new MoeCompressException(ErrorKind.Infeasible,
                    $"layer {l}: output expert {k} is original expert {kept[k]} of group {from}, but with n_group = {cfg.NumGroups} " +
                    $"output positions {to * newSize}..{to * newSize + newSize - 1} form group {to}; list the kept experts group by group");
        }
    }

    /// <summary>Merged experts are computed in float: refuse FP8/MXFP4 (or other quantized) expert storage.</summary>
    private static void CheckMergeable(RoutedTensorLayout layout, int l)
    {
        var src = layout.Input.Tensors;
        var group = layout.ByLayer[l];
        foreach (var name in group.Fused.Concat(group.PerExpert.SelectMany(x => x)))
        {
            var role = layout.Roles[name];
            var dtype = src.GetInfo(name).DType;
            if (role.QuantScale || !SurgeryTensorBytes.IsPlainFloat(dtype) || layout.Config.Mxfp4Experts)
                throw new MoeCompressException(ErrorKind.Infeasible,
                    $"layer {l}: merged experts need floating-point expert weights, but '{name}' is {dtype.ToHeaderName()}" +
                    $"{(role.QuantScale ? " (a quantization scale)" : "")}; dequantize first");
        }
    }

    private static void CheckWeightedRows(RoutedTensorLayout layout, int l)
    {
        foreach (var name in layout.ByLayer[l].RouterRows)
        {
            var dtype = layout.Input.Tensors.GetInfo(name).DType;
            if (!SurgeryTensorBytes.IsPlainFloat(dtype))
                throw new MoeCompressException(ErrorKind.Infeasible,
                    $"layer {l}: weighted router rows need a floating-point router, but '{name}' is {dtype.ToHeaderName()}; dequantize first");
        }
    }

    private static MoeCompressException Usage(string message) => new(ErrorKind.Usage, message);
}
